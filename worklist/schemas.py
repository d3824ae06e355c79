"""The web API's request and response bodies, and the validated path and query values."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, Strict, StrictBool, StrictInt

from triage.records.tables import FeedbackKind, Role
from worklist import views

# Text a person typed: no control characters (PostgreSQL cannot store NUL; logs and CSV choke on the rest).
TEXT = r"^[^\x00-\x1f\x7f]*$"
UID = r"^[0-9]+(\.[0-9]+)*$"
MAX_ID = 2_147_483_647  # the database's 32-bit integer keys

StudyId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$")


def _iso_8601(value: object) -> object:
    # pydantic would also take Unix timestamps ("0.5"); the spec promises RFC 3339 date-times only.
    if isinstance(value, str) and not _ISO_8601.match(value):
        raise ValueError("give an RFC 3339 date-time with its offset, e.g. 2026-11-22T08:00:00Z")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]


class Problem(BaseModel):
    """Why a request failed: a sentence, or (invalid fields) one entry per field with its reason."""

    detail: str | list[dict[str, Any]]


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem} for code in codes}


AUTH = problems(401, 403)


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    database: bool
    queue: bool
    pacs: Literal["reachable", "unreachable", "not configured", "unknown"] = Field(
        description="As the process that delivers results last found it; unknown: it has not looked lately"
    )
    studies_by_state: dict[str, int]
    storage: Literal["ok", "degraded"] = Field(
        description="degraded: free space is below the watermark and the listener refuses new instances"
    )
    degraded: list[str] = Field(
        default_factory=list,
        description="What runs degraded (a process that keeps stopping), one sentence each; none: all well",
    )


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=TEXT)
    password: str = Field(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")
    new_password: str = Field(min_length=12, max_length=1024, pattern=r"^[^\x00]*$")


class SignedIn(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'")
    expires_at: datetime
    username: str
    roles: list[Role]


class Me(BaseModel):
    name: str
    roles: list[Role]


class WorklistPage(BaseModel):
    queue: views.Queue
    items: list[views.WorklistItem]
    single_read_max_score: int = Field(description="The single-reading threshold in force now")
    revision: int
    storage_degraded: bool = Field(description="The listener refuses new instances: storage is nearly full")
    degraded: list[str] = Field(default_factory=list, description="What runs degraded, one sentence each")
    switched_off: list[str] = Field(
        default_factory=list,
        description="Decisions switched off (by the live evidence or an admin), each with why",
    )
    pacs_viewer: bool = Field(default=False, description="A PACS viewer is configured: rows can open in it")


class Revision(BaseModel):
    revision: int = Field(description="Changes whenever a study changes state or gets a reading")


class BoxIn(BaseModel):
    sop_instance_uid: str = Field(max_length=64, pattern=UID)
    corners: list[Annotated[float, Strict()]] = Field(
        min_length=4, max_length=4, description="[x0, y0, x1, y1] in source pixels"
    )


class FeedbackIn(BaseModel):
    kind: FeedbackKind = Field(description="FRACTURE for trauma; RECALL or CANCER (the outcome) for screens")
    value: StrictBool = Field(description="Yes (fracture confirmed, recalled, cancer) or no")  # 0 is not no
    boxes: list[BoxIn] = Field(default_factory=list, max_length=20, description="Where, optionally")
    comment: str = Field(default="", max_length=2000, pattern=TEXT)
    version: StrictInt | None = Field(default=None, ge=1, le=MAX_ID, description="Default: the latest")


class AuditEntry(BaseModel):
    id: int = Field(description="Pass as before_id to read the page after this one")
    at: datetime
    actor: str
    action: str
    source: str
    detail: str
    study_id: int | None
    patient_id: str
    accession_number: str


class ConflictResolution(BaseModel):
    reason: str = Field(min_length=3, max_length=500, pattern=TEXT, description="What was checked, and found")


class ConflictResolved(BaseModel):
    study_id: int
    conflict: bool


class Retraction(BaseModel):
    reason: str = Field(
        min_length=3, max_length=500, pattern=TEXT, description="Why the AI result must not act"
    )


class Resend(BaseModel):
    reason: str = Field(min_length=3, max_length=500, pattern=TEXT, description="Why it is sent again")


class ViewerLaunch(BaseModel):
    url: str = Field(description="The site's PACS viewer URL for this study (the launch is audited)")


class StudyRef(BaseModel):
    study_id: int


class Retracted(BaseModel):
    study_id: int
    version: int = Field(description="The study version whose verdict was withdrawn")
    superseded_at_pacs: bool = Field(
        description="The PACS had the result: a superseding NOT ANALYSED SR and an IOCM rejection note follow"
    )


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f,]*$")
    password: str = Field(min_length=12, max_length=1024, pattern=r"^[^\x00]*$")
    roles: list[Role] = Field(min_length=1)


class UserOut(BaseModel):
    username: str
    roles: list[Role]
    active: bool
    created_at: datetime
