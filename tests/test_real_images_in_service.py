"""Real FracAtlas radiographs, wrapped as DICOM and sent through the running service, get the same
probabilities as ``triage evaluate`` gives the same images: what is measured is what runs."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import select

from evaluation.evaluate import predict
from inference.model import load_model
from testkit import synthetic
from testkit.peers import REPO, free_port, start_triage, stop, storescu, wait_until
from training.adapters import fracatlas
from triage.records.db import Database
from triage.records.tables import Result, Study, StudyVersion

pytestmark = pytest.mark.integration

DATASET = Path(os.environ.get("TRIAGE_DATASETS", REPO.parent / "shared" / "datasets")) / "fracatlas_dev"
REGIONS = {"hand": "HAND", "leg": "LEG", "hip": "HIP", "shoulder": "SHOULDER"}
TOLERANCE = 1e-4  # float32 throughout; the DICOM path decodes to the very same values


def chosen() -> list[dict[str, str]]:
    """Three fractured and three intact radiographs of different regions, the same every run."""
    with (DATASET / "labels.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    picked = []
    for label in ("fracture", "no_fracture"):
        for region in ("hand", "leg", "shoulder"):
            picked.append(next(r for r in rows if r["label"] == label and r["body_part"] == region))
    return picked


def test_the_service_and_triage_evaluate_agree_on_real_radiographs(make_settings, tmp_path):
    assert DATASET.is_dir(), f"fracatlas_dev is expected at {DATASET}"
    settings = make_settings(dicom_port=free_port())
    rows = chosen()
    names = {Path(r["file"]).name for r in rows}
    samples = [s for s in fracatlas(DATASET) if s.path is not None and s.path.name in names]
    model = load_model(settings.models_dir / "fracture", torch.device("cpu"))
    evaluated = {p.sample.path.name: p.probability for p in predict(model, samples).images}
    studies, paths = {}, []
    for n, row in enumerate(rows):
        pixels = np.asarray(Image.open(DATASET / row["file"]).convert("L"))
        ds = synthetic.radiograph(
            pixels, body_part=REGIONS[row["body_part"]], patient=synthetic.Patient(f"FX{n}")
        )
        studies[str(ds.StudyInstanceUID)] = Path(row["file"]).name
        paths += synthetic.write([ds], tmp_path / "send" / str(n))
    listener = start_triage("listener", settings, tmp_path / "listener.log")
    worker = start_triage("worker", settings, tmp_path / "worker.log")
    database = Database(settings.resolved_database_url)
    try:
        wait_until(lambda: storescu(settings.dicom_port, paths[0]).returncode == 0, timeout=60, interval=0.5)
        assert storescu(settings.dicom_port, *paths[1:]).returncode == 0

        def served():
            with database.session() as session:
                found = session.execute(
                    select(Study.study_instance_uid, Result.outcome)
                    .join(StudyVersion, StudyVersion.study_id == Study.id)
                    .join(Result, Result.version_id == StudyVersion.id)
                ).all()
            return (
                {studies[uid]: outcome.probability for uid, outcome in found}
                if len(found) == len(rows)
                else None
            )

        probabilities = wait_until(served, timeout=240, interval=0.5)
    finally:
        database.dispose()
        stop(worker)
        stop(listener)
    assert set(probabilities) == set(evaluated) and len(evaluated) == 6
    for name, probability in probabilities.items():
        assert probability == pytest.approx(evaluated[name], abs=TOLERANCE), name
