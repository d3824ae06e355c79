"""The ML engineers' loop end to end on phantoms: manifest -> MLflow run -> registered model ->
promotion (refused without validated operating points) -> the worker runs it -> rollback."""

import hashlib
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from evaluation.findings import EvaluationReport
from inference import registry
from inference.tasks import AnalyseStudyTask
from inference.worker import ModelPipelines
from testkit.peers import REPO, triage_env
from testkit.phantoms import radiograph
from tests.worklist import seed
from training.config import TrainConfig
from training.tracking import train_and_register
from triage.cards import read_card
from triage.messages import AnalyseStudy, InstanceRef
from triage.records.tables import AuditEvent, Instance, Result, StudyState, StudyVersion

PHANTOM_CONFIG = {
    "pipeline": "fracture",
    "dataset": "manifest",
    "name": "triage-fracture-phantom",
    "version": "0.0.1",
    "input_size": 128,
    "epochs": 2,
    "batch_size": 8,
    "learning_rate": 0.002,
    "validation_fraction": 0.3,
    "test_fraction": 0.3,
    "threads": 2,
}


def triage_cli(env, *arguments):
    return subprocess.run(
        [sys.executable, "-m", "triage", *arguments],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def phantom_manifest(folder, count=40):
    rng = np.random.default_rng(5)
    lines = ["image,label,boxes,view,laterality,patient_id,exam_id,split,site"]
    for index in range(count):
        fractured = (index // 2) % 2 == 0  # both images of a patient alike
        pixels, boxes = radiograph(128, fractured, rng)
        path = folder / "images" / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255).astype(np.uint8)).save(path)
        box_text = ";".join(",".join(f"{v:g}" for v in box) for box in boxes)
        lines.append(
            f'images/{index}.png,{int(fractured)},"{box_text}",PA,R,patient{index // 2},,,site{index % 3}'
        )
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


@pytest.fixture
def trained(settings, tmp_path):
    manifest = phantom_manifest(tmp_path / "data")
    config = TrainConfig.model_validate(PHANTOM_CONFIG)
    epochs = []
    tracked = train_and_register(
        settings, config, manifest, tmp_path / "model", progress=lambda e, *_: epochs.append(e), max_steps=3
    )
    return tracked, epochs


def test_a_run_is_logged_to_mlflow_and_registered_with_its_card(settings, trained):
    tracked, _ = trained
    client = registry.client(settings)
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["input_size"] == "128" and run.data.params["dataset"] == "manifest"
    assert "auroc" in run.data.metrics and "auroc_ci95_low" in run.data.metrics
    assert [m.step for m in client.get_metric_history(tracked.run_id, "train_loss")] == [
        1
    ]  # 3 steps: 1 epoch
    artifacts = {a.path for a in client.list_artifacts(tracked.run_id)}
    assert {"config.yaml", "model"} <= artifacts
    assert tracked.registered_version == "1"
    (info,) = registry.versions(settings)
    assert (info.card_name, info.card_version, info.validated, info.aliases) == (
        "triage-fracture-phantom",
        "0.0.1",
        True,
        (),
    )
    assert "manifest manifest.csv" in tracked.card.data[0].name
    assert tracked.card.doubt_threshold is not None
    rule_out = tracked.card.evidence.rule_out  # the rule-out evidence, from the test part
    assert rule_out is not None and rule_out.doubt_threshold == tracked.card.doubt_threshold
    assert rule_out.sensitivity_at_doubt == tracked.card.metrics["sensitivity_at_doubt"]
    assert re.fullmatch(
        r"\d+ min for \d epochs at 128 px, \d thread\(s\), on .+ (bfloat16\)|GPU .+)", tracked.card.trained
    )
    assert "calibration_error" in tracked.card.metrics, "how far the score is from a probability"


def test_promotion_puts_the_model_into_the_worker_and_rollback_takes_it_out(settings, trained, database):
    tracked, _ = trained
    pipelines = ModelPipelines(settings)
    assert pipelines["fracture"].identity.name == "triage-fracture-lite0"  # the bundled one
    env = triage_env(settings)
    promote = triage_cli(env, "models", "promote", "fracture", "1")
    assert promote.returncode == 0, promote.stderr
    assert "triage-fracture v1 promoted (was the bundled model)" in promote.stdout
    assert registry.production(settings, "fracture") == "1"
    listed = triage_cli(env, "models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "fracture\tv1\ttriage-fracture-phantom 0.0.1\tproduction\tvalidated" in listed.stdout
    fresh = ModelPipelines(settings)  # a new worker process
    identity = fresh["fracture"].identity
    assert (identity.name, identity.version) == ("triage-fracture-phantom", "0.0.1")
    assert identity.weights_sha256 == tracked.card.weights_sha256
    rollback = triage_cli(env, "models", "rollback", "fracture")
    assert rollback.returncode == 0 and "rolled back to the bundled model" in rollback.stdout
    assert registry.production(settings, "fracture") is None
    with database.session() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["model.promoted", "model.rolled_back"]


def test_a_running_worker_picks_up_a_promotion_without_restart(make_settings, tmp_path, trained):
    tracked, _ = trained
    settings = make_settings(model_check_seconds=0.01)
    pipelines = ModelPipelines(settings)
    assert pipelines["fracture"].identity.name == "triage-fracture-lite0"
    registry.promote(settings, "fracture", tracked.registered_version)
    import time

    time.sleep(0.05)
    assert pipelines["fracture"].identity.name == "triage-fracture-phantom"


def test_promotion_is_refused_without_validated_operating_points(settings, tmp_path, trained):
    folder = tmp_path / "unvalidated"
    shutil.copytree(REPO / "models" / "fracture", folder)
    card = json.loads((folder / "card.json").read_text())
    card["version"] = "9.9.9"
    card["metrics"] = {"auroc": card["metrics"]["auroc"]}  # thresholds, but never measured
    (folder / "card.json").write_text(json.dumps(card))
    read_card(folder)
    client = registry.client(settings)
    run_id = client.create_run(registry.experiment_id(settings, "fracture")).info.run_id
    client.log_artifacts(run_id, str(folder), artifact_path="model")
    version = registry.register(settings, folder, run_id)
    with pytest.raises(registry.PromotionRefused, match="no held-out sensitivity_at_doubt"):
        registry.promote(settings, "fracture", version)
    with pytest.raises(registry.PromotionRefused, match=r"already has card version 9\.9\.9"):
        registry.register(settings, folder, run_id)


def test_evaluate_then_calibrate_then_promote_then_the_worker_runs_it(settings, trained, tmp_path, database):
    tracked, _ = trained
    manifest = tmp_path / "data" / "manifest.csv"
    env = triage_env(settings)
    evaluation = triage_cli(env, "evaluate", "fracture/1", str(manifest), "--out", str(tmp_path / "report"))
    assert evaluation.returncode == 0, evaluation.stderr
    found = EvaluationReport.read_json(tmp_path / "report" / "report.json")
    assert found.model.version == "0.0.1"
    assert found.dataset.exams == 20  # exam_id empty: one exam per patient
    assert set(found.operating_points) == {"doubt", "fracture"}
    doubt = found.operating_points["doubt"]
    assert doubt.sensitivity is not None and doubt.sensitivity.n == found.dataset.positive_exams
    assert found.boxes is not None and found.boxes.true_boxes == 20
    assert found.boxes.map50.ci95_low <= found.boxes.map50.value <= found.boxes.map50.ci95_high
    assert set(found.subgroups["site"]) == {"site0", "site1", "site2"}
    rule_out = found.evidence.rule_out  # the gate's figures, as a card carries them
    assert rule_out is not None and rule_out.doubt_threshold == tracked.card.doubt_threshold
    assert rule_out.sensitivity_at_doubt == doubt.sensitivity
    assert "<img" in (tmp_path / "report" / "report.html").read_text()
    client = registry.client(settings)
    runs = client.search_runs([registry.experiment_id(settings, "fracture")], "tags.kind = 'evaluation'")
    assert len(runs) == 1 and "exam_auroc" in runs[0].data.metrics

    calibrated = triage_cli(
        env,
        "calibrate",
        "fracture/1",
        str(manifest),
        "--out",
        str(tmp_path / "cal"),
        "--version",
        "0.0.1+site",
        "--target-sensitivity",
        "0.5",
        "--target-specificity",
        "0.5",
    )
    assert calibrated.returncode == 0, calibrated.stderr
    assert "registered as triage-fracture version 2" in calibrated.stderr
    compared = triage_cli(env, "compare", "fracture/1", "fracture/2", str(manifest))
    assert compared.returncode == 0, compared.stderr
    delong = json.loads(compared.stdout)  # the same weights, other operating points: same ranking
    assert delong["exams"] == 20 and delong["difference"] == 0 and delong["p_value"] == 1.0
    card = read_card(tmp_path / "cal")
    assert card.weights_sha256 == tracked.card.weights_sha256 and card.version == "0.0.1+site"
    assert card.metrics["sensitivity_at_doubt"].n > 0 and "calibrated with triage calibrate" in card.held_out
    assert (
        card.evidence.rule_out is not None and card.evidence.rule_out.doubt_threshold == card.doubt_threshold
    )
    assert card.evidence.boxes is None, "boxes are not re-measured at the new thresholds"
    registry.promote(settings, "fracture", "2")
    # The worker analyses a live study with the promoted model, and the result names it.
    study_version_id = queued_trauma_study(database, settings)
    with database.session() as session:
        payload = payload_of(session, settings, study_version_id)
    assert AnalyseStudyTask(database, ModelPipelines(settings), settings.storage_dir)(payload) == "ANALYSED"
    with database.session() as session:
        result = session.scalars(select(Result)).one()
    assert (result.model_name, result.model_version) == ("triage-fracture-phantom", "0.0.1+site")
    assert result.summary.endswith("[model triage-fracture-phantom 0.0.1+site]")


def queued_trauma_study(database, settings):
    seed.add_study(
        database, settings, seed.trauma(11, fractured=True), pipeline="fracture", state=StudyState.QUEUED
    )
    with database.session() as session:
        return session.scalars(select(StudyVersion.id)).one()


def payload_of(session, settings, study_version_id):
    version = session.get(StudyVersion, study_version_id)
    instances = session.scalars(select(Instance).where(Instance.study_id == version.study_id)).all()
    return AnalyseStudy(
        study_version_id=version.id,
        study_instance_uid=version.study.study_instance_uid,
        version=version.number,
        pipeline="fracture",
        instances=tuple(
            InstanceRef(
                sop_instance_uid=i.sop_instance_uid,
                sop_class_uid=i.sop_class_uid,
                storage_key=i.storage_key,
                sha256=hashlib.sha256((settings.storage_dir / i.storage_key).read_bytes()).hexdigest(),
            )
            for i in instances
        ),
        skipped={},
    ).model_dump()


def test_shadow_mode_loads_the_candidate_beside_production(settings, trained):
    tracked, _ = trained
    pipelines = ModelPipelines(settings)
    assert pipelines.shadow("fracture") is None
    registry.set_shadow(settings, "fracture", tracked.registered_version)
    fresh = ModelPipelines(settings)
    assert fresh.shadow("fracture").identity.name == "triage-fracture-phantom"
    assert fresh["fracture"].identity.name == "triage-fracture-lite0"  # production unchanged
    registry.set_shadow(settings, "fracture", None)
    assert ModelPipelines(settings).shadow("fracture") is None


def test_an_unreachable_registry_never_switches_the_model_quietly(make_settings, trained, monkeypatch):
    from mlflow.exceptions import MlflowException

    from inference.model import ModelUnavailable
    from testkit.peers import free_port

    tracked, _ = trained
    settings = make_settings(model_check_seconds=0.01)
    registry.promote(settings, "fracture", tracked.registered_version)
    pipelines = ModelPipelines(settings)
    assert pipelines["fracture"].identity.name == "triage-fracture-phantom"

    def down(*_):
        raise MlflowException("API request failed: connection refused")  # INTERNAL_ERROR, as when down

    monkeypatch.setattr(registry, "production", down)
    import time

    time.sleep(0.05)
    assert pipelines["fracture"].identity.name == "triage-fracture-phantom"  # kept, not the bundled one
    monkeypatch.undo()
    # A worker that starts while the (real, HTTP) registry is down analyses nothing: the study goes
    # NOT ANALYSED with the reason, instead of running the bundled model in the promoted one's place.
    unreachable = make_settings(mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ModelUnavailable, match="registry cannot be read"):
        ModelPipelines(unreachable)["fracture"]
