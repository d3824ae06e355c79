"""triage: clinical AI triage of trauma radiographs and screening mammograms.

This package is the base every process stands on: settings and logging, the shared vocabulary
(``pipelines``, ``outcomes``, ``messages``), DICOM images (``imaging``), model ``cards``, labelled-data
``manifests``, the system of ``records``, and the one ``triage`` command (``cli``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("triage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
