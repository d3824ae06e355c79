"""Admins' overrides of the evidence gate, on SQLite and the real PostgreSQL: enabled with a reason,
audited, read by the worker's pipelines on the next study, ended and audited again."""

import pytest
from sqlalchemy import select

from inference.worker import ModelPipelines
from testkit import phantoms
from testkit.synthetic import stored_study
from tests.dicom_node.test_studies import T0
from tests.worklist import seed
from tests.worklist.conftest import any_database  # noqa: F401 - the fixture, on both engines
from triage.outcomes import Analysed, Decision, ModelIdentity
from triage.records import decision_changes, overrides, results
from triage.records.audit_actions import AuditAction
from triage.records.tables import AuditEvent


def actions(database):
    with database.reading() as session:
        return [(e.action, e.detail) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_an_override_needs_a_reason_is_audited_and_ends_audited(any_database):  # noqa: F811
    with any_database.session() as session, pytest.raises(ValueError, match="needs a reason"):
        overrides.enable(session, "m", "1", Decision.RULE_OUT, "  ", "cli:admin", T0, "cli")
    with any_database.session() as session:
        why = "local audit of 400 studies"
        overrides.enable(session, "m", "1", Decision.RULE_OUT, why, "cli:admin", T0, "cli")
    with any_database.reading() as session:
        found = overrides.in_force(session, "m", "1")
        assert overrides.in_force(session, "m", "2") == {}, "an override is for one model version"
    assert found[Decision.RULE_OUT] == (
        f"enabled against the evidence by cli:admin on {T0:%Y-%m-%d}: local audit of 400 studies"
    )
    with any_database.session() as session:
        assert overrides.revoke(session, "m", "1", Decision.RULE_OUT, "cli:other", T0, "cli")
        assert not overrides.revoke(session, "m", "1", Decision.RULE_OUT, "cli:other", T0, "cli")
    with any_database.reading() as session:
        assert overrides.in_force(session, "m", "1") == {}
    said = actions(any_database)
    assert [a for a, _ in said] == [AuditAction.DECISION_OVERRIDDEN, AuditAction.DECISION_OVERRIDE_REVOKED]
    assert "local audit of 400 studies" in said[0][1]


def test_the_worker_reads_an_override_on_the_next_study_and_the_result_audits_the_gate(
    any_database,  # noqa: F811
    make_settings,
    tmp_path,
):
    """The bundled breast model has no single-reading evidence: double reading, whatever its score;
    single reading enabled for that model version by two admins makes the next screen single-read;
    one admin's ending it undoes it."""
    settings = make_settings(single_read_max_score=10)  # any scored screen would be single-read
    screen = stored_study(phantoms.screen(None, seed=4, size=256), tmp_path / "storage", "breast")

    def run():
        result = ModelPipelines(settings, any_database)["breast"](*screen)
        assert isinstance(result, Analysed)
        return result.outcome

    first = run()
    assert first.route == "DOUBLE_READ" and Decision.SINGLE_READ in first.not_enabled
    with any_database.session() as session:  # two admins, after the what-if
        change = decision_changes.propose(
            session, pipeline="breast", decision=Decision.SINGLE_READ, model=("triage-breast-demo", "1.0.0"),
            single_read_max_score=10, effective_at=T0, reason="pilot", actor="local:a", settings=settings,
            now=T0, source="admin",
        )  # fmt: skip
        assert change.what_if["screens"] == 0, "the what-if counts the site's studies (none here)"
    with any_database.session() as session:
        decision_changes.approve(session, change.id, "local:b", T0, "admin")
    overridden = run()
    assert overridden.route == "SINGLE_READ" and Decision.SINGLE_READ in overridden.overridden
    assert (
        "pilot; the evidence: the model's card carries no single-reading evidence"
        in (overridden.overridden[Decision.SINGLE_READ])
    )
    with any_database.session() as session:
        overrides.revoke(session, "triage-breast-demo", "1.0.0", Decision.SINGLE_READ, "cli:a", T0, "cli")
    assert run().route == "DOUBLE_READ"
    study_id = seed.add_study(
        any_database, settings, phantoms.screen(None, seed=5, size=64), pipeline="breast",
        state=seed.StudyState.ANALYSING,
    )  # fmt: skip
    with any_database.session() as session:
        version_id = session.scalar(
            select(seed.StudyVersion.id).where(seed.StudyVersion.study_id == study_id)
        )
        results.add_result(
            session, version_id, first, ModelIdentity("triage-breast-demo", "1.0.0", "0" * 64),
            summary="x", software_version="0", now=T0,
        )  # fmt: skip
    with any_database.reading() as session:
        event = session.execute(
            select(AuditEvent.study_id, AuditEvent.detail).where(
                AuditEvent.action == AuditAction.DECISION_NOT_ENABLED
            )
        ).one()
    assert event.study_id == study_id and "single reading not enabled: the model's card" in event.detail
