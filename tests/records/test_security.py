"""The security log's batching: counted duplicates, a bounded memory, nothing lost on a failed write."""

from sqlalchemy import select

from triage.records.db import Database
from triage.records.security import SecurityLog
from triage.records.tables import AuditEvent


def rows(database):
    with database.session() as session:
        return [
            (e.actor, e.action, e.detail) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_identical_events_are_counted_into_one_row(database):
    log = SecurityLog(database, interval_seconds=3600)
    for _ in range(5):
        log.record(actor="dicom:X", action="association.rejected", source="10.0.0.1", detail="not allowed")
    log.record(actor="dicom:Y", action="association.rejected", source="10.0.0.1", detail="not allowed")
    assert rows(database) == []  # nothing written in the caller's thread
    assert log.flush() == 2
    [(actor, action, detail), other] = rows(database)
    assert (actor, action) == ("dicom:X", "association.rejected")
    assert detail.startswith("not allowed (5 times from ")
    assert other == ("dicom:Y", "association.rejected", "not allowed")
    log.close()


def test_past_the_bound_events_are_counted_not_kept(database):
    log = SecurityLog(database, interval_seconds=3600, max_pending=3)
    for number in range(10):
        log.record(actor=f"dicom:P{number}", action="association.rejected", source="", detail="")
    assert log.flush() == 4
    *kept, (actor, action, detail) = rows(database)
    assert len(kept) == 3 and (actor, action) == ("triage", "audit.suppressed")
    assert detail.startswith("7 more security events")
    log.close()


def test_a_failed_write_keeps_the_events_for_the_next(database, tmp_path):
    broken = Database(f"sqlite:///{tmp_path}/no-tables.db")  # never migrated: the insert fails
    log = SecurityLog(broken, interval_seconds=3600)
    log.record(actor="anonymous", action="token.refused", source="10.0.0.2", detail="unknown")
    try:
        log.flush()
    except Exception:  # noqa: BLE001 - any database error
        pass
    else:
        raise AssertionError("the write into a database without tables should fail")
    log._database = database  # the database is back
    assert log.flush() == 1
    assert rows(database) == [("anonymous", "token.refused", "unknown")]
    log.close()


def test_the_background_writer_flushes_without_being_asked(database):
    import time

    log = SecurityLog(database, interval_seconds=0.1)
    log.record(actor="anonymous", action="token.refused", source="", detail="late at night")
    deadline = time.monotonic() + 5
    while not rows(database) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows(database) == [("anonymous", "token.refused", "late at night")]
    log.close()
