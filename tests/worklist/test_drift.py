"""The score drift per scanner: each result keeps its exam probability and scanner, the worker keeps
its model's reference deciles, and the population stability index per scanner is given in the API
and /metrics, on SQLite and on the real PostgreSQL. Synthetic studies and scores."""

import math

import pytest
from sqlalchemy import select

from tests.worklist import seed
from tests.worklist.test_api import signed_in
from triage.header_facts import header_facts
from triage.pipelines import Pipeline
from triage.records import drift
from triage.records.status_tables import ModelReference
from triage.records.tables import Result, Role, StudyState

DECILES = [0.1 * k for k in range(1, 10)]
MODEL = ("triage-fracture-phantom", "0.1.0")  # what tests.worklist.seed names its results' model


def test_the_index_is_zero_for_the_reference_and_grows_with_a_shift():
    assert drift.psi([6] * 10) == pytest.approx(0.0)
    one_bin = drift.psi([0] * 9 + [60])
    assert one_bin == pytest.approx(9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + 0.9 * math.log(10))
    assert drift.psi([4, 5, 6, 7, 6, 6, 6, 7, 7, 6]) < 0.1 < 0.25 < one_bin
    with pytest.raises(ValueError, match="no studies"):
        drift.psi([0] * 10)


def test_the_scanner_is_read_from_the_header():
    ds = seed.trauma(1, False)[0]
    ds.Manufacturer, ds.ManufacturerModelName = "Acme ", "DR-1"
    assert header_facts(ds).scanner == "Acme DR-1"
    del ds.Manufacturer, ds.ManufacturerModelName
    assert header_facts(ds).scanner == ""


def studies_from(database, settings, scanner, probabilities, first):
    for n, probability in enumerate(probabilities, start=first):
        datasets = seed.trauma(n, False)
        for ds in datasets:
            ds.Manufacturer, ds.ManufacturerModelName = scanner.split(" ", 1)
        outcome = seed.fracture_outcome("DOUBT" if probability >= 0.2 else "NO_FRACTURE", probability, {})
        seed.add_study(
            database, settings, datasets, pipeline="fracture", state=StudyState.REPORTED, outcome=outcome
        )


def test_a_scanner_whose_scores_shifted_stands_out(any_database, settings, client):
    with any_database.session() as session:
        drift.record_reference(session, Pipeline.FRACTURE, *MODEL, DECILES, seed.T0)
        drift.record_reference(session, Pipeline.FRACTURE, *MODEL, [0.5] * 9, seed.T0)  # kept once
    steady = [0.05 + 0.1 * (n % 10) for n in range(60)]  # a sixth of them in each decile bin
    studies_from(any_database, settings, "Acme DR-1", steady, first=0)
    studies_from(any_database, settings, "Other DR-9", [0.93] * 55 + [0.4] * 5, first=100)
    studies_from(any_database, settings, "Rare X-2", [0.5] * 3, first=200)
    with any_database.reading() as session:
        assert session.scalars(select(Result.scanner).distinct().order_by(Result.scanner)).all() == [
            "Acme DR-1", "Other DR-9", "Rare X-2"
        ]  # fmt: skip
        found = {d.scanner: d for d in drift.drift(session, Pipeline.FRACTURE, seed.T0, 30, 50)}
    assert found["Acme DR-1"].counts == (6,) * 10 and found["Acme DR-1"].psi == pytest.approx(0.0)
    assert found["Other DR-9"].counts == (0, 0, 0, 0, 5, 0, 0, 0, 0, 55) and found["Other DR-9"].psi > 1.0
    assert found["Rare X-2"].studies == 3 and found["Rare X-2"].psi is None, "too few studies to say"
    assert found["Acme DR-1"].model == " ".join(MODEL)

    admin = signed_in(client, any_database, "boss", Role.ADMIN)
    answer = client.get("/api/drift", headers=admin)
    assert answer.status_code == 200, answer.text
    listed = {d["scanner"]: d for d in answer.json()}
    assert listed["Other DR-9"]["psi"] == pytest.approx(found["Other DR-9"].psi)
    radiologist = signed_in(client, any_database, "rad", Role.RADIOLOGIST)
    assert client.get("/api/drift", headers=radiologist).status_code == 403
    metrics = client.get("/metrics").text
    assert 'triage_score_drift_studies{pipeline="fracture",scanner="Rare X-2"} 3.0' in metrics
    assert 'triage_score_psi{pipeline="fracture",scanner="Other DR-9"}' in metrics
    assert 'triage_score_psi{pipeline="fracture",scanner="Rare X-2"}' not in metrics


def test_the_worker_keeps_the_reference_of_the_model_it_puts_into_service(settings, database):
    from inference.worker import ModelPipelines
    from triage.cards import read_card

    ModelPipelines(settings, database)[Pipeline.FRACTURE]
    card = read_card(settings.models_dir / "fracture")
    with database.reading() as session:
        [row] = session.execute(
            select(ModelReference.model_name, ModelReference.model_version, ModelReference.pipeline,
                   ModelReference.deciles)
        ).all()  # fmt: skip
    assert tuple(row[:3]) == (card.name, card.version, "fracture")
    assert row.deciles == list(card.drift_reference) and len(row.deciles) == 9
