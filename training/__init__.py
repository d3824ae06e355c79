"""Training: adapters from public sets to manifests, datasets and splits, the training loops, MLflow
runs, and export of weights with their model cards. The running service never imports it."""
