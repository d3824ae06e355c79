"""The DICOM edge: receives, persists, assembles and routes studies. Never imports torch."""
