"""Training: manifests and datasets, the training loops, and export of weights with model cards."""
