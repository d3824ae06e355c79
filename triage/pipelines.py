"""The pipelines triage runs: the one spelling of "fracture" and "breast"."""

from __future__ import annotations

import enum


class Pipeline(enum.StrEnum):
    """What a routed study is analysed for; persisted in study versions, results and model cards."""

    FRACTURE = "fracture"  # trauma radiographs: FRACTURE / DOUBT / NO FRACTURE
    BREAST = "breast"  # screening mammograms: a 1-10 risk score and a reading route

    @property
    def modality(self) -> str:
        """The modality of the images the pipeline reads (manifests, evaluation)."""
        return "DX" if self is Pipeline.FRACTURE else "MG"

    @property
    def registered_name(self) -> str:
        """The pipeline's registered model in MLflow."""
        return f"triage-{self.value}"
