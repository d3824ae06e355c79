"""The task contract between the processes: task names, the queue, and the JSON payloads they carry.

Pydantic only, so that every module that sends or takes a task can import it without the broker.
Payloads carry ids, UIDs and storage keys (relative to the storage root), never datasets.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from triage.pipelines import Pipeline

ANALYSE_STUDY = "triage.analyse_study"
REPORT_NOT_ANALYSED = "triage.report_not_analysed"
WITHDRAW_RESULT = "triage.withdraw_result"
QUEUE = "triage"


class InstanceRef(BaseModel):
    """One instance a task reads: where it lies under the storage root and what its bytes hash to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sop_instance_uid: str
    sop_class_uid: str
    storage_key: str
    sha256: str


class AnalyseStudy(BaseModel):
    """Payload of ``triage.analyse_study``: one complete, routed version of a study."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_version_id: int
    study_instance_uid: str
    version: int
    pipeline: Pipeline
    instances: tuple[InstanceRef, ...]
    skipped: dict[str, str]


class ReportNotAnalysed(AnalyseStudy):
    """Payload of ``triage.report_not_analysed``: a routed study the intended-use gate stopped."""

    reason: str


class WithdrawResult(BaseModel):
    """Payload of ``triage.withdraw_result``: the objects of this version that reached the PACS are
    superseded by a NOT ANALYSED SR and rejected by an IOCM note. Which objects those are, the
    worker reads from the database, never from the message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_version_id: int
    reason: str
