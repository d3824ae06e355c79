"""The five invariants of the conservative path, checked after a scenario from the database, the
storage and the PACS's own copy (Orthanc's REST API).

1. Every instance answered 0x0000 is on disk with its hash and row (or recorded as removed).
2. Every study version is REPORTED or NOT ANALYSED with a reason, IGNORED or SUPERSEDED with one, or
   still live and younger than its deadline.
3. No study is discharge-eligible or single-read without a complete, provenance-stamped result whose
   objects the PACS acknowledged, from a model whose evidence supports that decision (or an admin's
   audited override); nothing a withdrawn version sent is left unrejected at the PACS.
4. No duplicate result or SR per version and model.
5. The audit log is whole: its hash chain verifies; with a collector, every event reached it once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from triage.outcomes import Decision, Verdict
from triage.records import audit_chain
from triage.records.db import Database
from triage.records.storage import sha256_of
from triage.records.tables import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Instance,
    Result,
    StateChange,
    StudyState,
    StudyVersion,
)
from triage.records.withdrawals import WITHDRAWAL_KINDS, rejection_uid

FINAL = (StudyState.REPORTED, StudyState.NOT_ANALYSED, StudyState.IGNORED, StudyState.SUPERSEDED)
PERMISSIVE = (Verdict.NO_FRACTURE, Verdict.SINGLE_READ)


@dataclass(frozen=True)
class Finding:
    invariant: int
    holds: bool
    detail: str = ""


def check(
    database: Database,
    storage_dir: Path,
    acknowledged: Iterable[str],
    pacs: Any | None,
    now: datetime,
    forwarded: Sequence[int] | None = None,
) -> list[Finding]:
    """The five invariants; ``acknowledged``: SOP Instance UIDs the senders were answered 0x0000 for;
    ``pacs``: an Orthanc (testkit.peers) whose copy is checked, or None; ``forwarded``: the sequence
    ids a syslog collector took (testkit.syslog), or None without one."""
    with database.reading() as session:
        return [
            _stored(session, storage_dir, set(acknowledged)),
            _settled(session, now),
            _acting(session, pacs),
            _unique(session),
            _audit(session, forwarded),
        ]


def _stored(session: Any, storage_dir: Path, acknowledged: set[str]) -> Finding:
    rows = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    missing = sorted(acknowledged - set(rows))
    broken = [
        uid for uid in sorted(acknowledged & set(rows))
        if rows[uid].removed_at is None
        and (not (storage_dir / rows[uid].storage_key).exists()
             or sha256_of(storage_dir / rows[uid].storage_key) != rows[uid].sha256)
    ]  # fmt: skip
    detail = f"{len(acknowledged)} acknowledged; no row: {missing[:3]}; not on disk as hashed: {broken[:3]}"
    return Finding(1, not missing and not broken, detail)


def _settled(session: Any, now: datetime) -> Finding:
    unsettled = []
    for version in session.scalars(select(StudyVersion)):
        if version.state in FINAL:
            if not version.reason and version.state != StudyState.REPORTED:
                unsettled.append(f"{version.id} {version.state} without a reason")
        elif version.result_due_at is not None and now > version.result_due_at:
            unsettled.append(f"{version.id} {version.state} past its result deadline")
    return Finding(2, not unsettled, "; ".join(unsettled[:3]) or "every version settled or in time")


def _acting(session: Any, pacs: Any | None) -> Finding:
    problems = []
    for version in session.scalars(select(StudyVersion).where(StudyVersion.verdict.in_(PERMISSIVE))):
        result = session.scalar(select(Result).where(Result.version_id == version.id))
        states = set(session.scalars(select(Delivery.state).where(Delivery.version_id == version.id)))
        if result is None or not result.model_name or not result.model_version:
            problems.append(f"{version.id} acts without a provenance-stamped result")
        elif set(result.outcome.not_enabled) & {Decision.RULE_OUT, Decision.SINGLE_READ}:
            problems.append(f"{version.id} acts on a decision its model's evidence does not support")
        if states and (version.state != StudyState.REPORTED or states != {DeliveryState.DELIVERED}):
            problems.append(f"{version.id} acts before the PACS acknowledged its objects")
    withdrawn = session.scalars(
        select(StudyVersion)
        .where(StudyVersion.state == StudyState.NOT_ANALYSED)
        .where(select(StateChange.id).where(StateChange.version_id == StudyVersion.id,
                                            StateChange.state == StudyState.ANALYSED).exists())
    ).all()  # fmt: skip
    for version in withdrawn:
        held = session.scalars(
            select(Delivery.sop_instance_uid)
            .where(Delivery.version_id == version.id, Delivery.state == DeliveryState.DELIVERED)
            .where(Delivery.kind.not_in(WITHDRAWAL_KINDS))
        ).all()
        if not held:
            continue
        note = rejection_uid(version.study.study_instance_uid, version.number, list(held))
        delivered = session.scalar(select(Delivery.state).where(Delivery.sop_instance_uid == note))
        if delivered != DeliveryState.DELIVERED:
            problems.append(f"{version.id} withdrawn, {len(held)} object(s) at the PACS not rejected")
        elif pacs is not None and not pacs.request("POST", "/tools/find", {
            "Level": "Instance", "Query": {"SOPInstanceUID": note}
        }):  # fmt: skip
            problems.append(f"{version.id}: the PACS has no rejection note {note}")
    return Finding(
        3, not problems, "; ".join(problems[:3]) or "nothing acts unacknowledged; every withdrawal rejected"
    )


def _unique(session: Any) -> Finding:
    doubled = session.execute(
        select(Delivery.version_id, Delivery.kind, func.count())
        .where(Delivery.kind.in_(("sr", "sc")))
        .group_by(Delivery.version_id, Delivery.kind)
        .having(func.count() > 1)
    ).all()
    results = session.execute(
        select(Result.version_id, func.count()).group_by(Result.version_id).having(func.count() > 1)
    ).all()
    detail = f"versions with two SRs or summary images: {doubled[:3]}; two results: {results[:3]}"
    return Finding(4, not doubled and not results, detail)


def sequence_id(event_id: int) -> int:
    """The RFC 5424 ``meta sequenceId`` the forwarder gives an audit event (delivery/audit_syslog.py)."""
    return event_id % 2147483647 or 1


def _audit(session: Any, forwarded: Sequence[int] | None) -> Finding:
    found = audit_chain.verify(session)
    problems = list(found.problems[:2])
    if forwarded is not None:
        ids = [sequence_id(i) for i in session.scalars(select(AuditEvent.id))]
        taken = Counter(forwarded)
        missing = [i for i in ids if i not in taken]
        twice = [i for i, count in taken.items() if count > 1]
        if missing or twice:
            problems.append(f"not at the collector: {missing[:3]} of {len(ids)}; taken twice: {twice[:3]}")
        else:
            problems.append(f"all {len(ids)} at the collector once")
    intact = found.intact and not any(p.startswith("not at the collector") for p in problems)
    return Finding(5, intact, f"{found.sealed_events} sealed, {found.unsealed_events} unsealed; "
                   f"{'; '.join(problems) or 'chain intact'}")  # fmt: skip
