"""Health, readiness and Prometheus metrics, for operators and their monitoring."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from triage import __version__
from triage.records import queries
from worklist.deps import State
from worklist.operations import database_ready, degraded, pacs_state, storage_degraded
from worklist.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok", version=__version__)


@router.get("/readyz", responses={503: {"model": Readiness}})
def readyz(response: Response, state: State) -> Readiness:
    """Ready when the database answers and the queue takes tasks; the PACS and storage are reported
    (results wait and retry while the PACS is away; with storage degraded, senders retry later, and
    the worklist must still serve radiologists, so neither makes triage unready); so is whatever
    else runs degraded (a process that keeps stopping)."""
    db_ok = database_ready(state.database)
    counts: dict[str, int] = {}
    pacs = pacs_state(state.settings, state.database) if db_ok else "unknown"
    if db_ok:
        with state.database.reading() as session:
            counts = queries.count_by_state(session)
    queue_ok = state.queue_ready()
    if not (db_ok and queue_ok):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(
        database=db_ok,
        queue=queue_ok,
        pacs=pacs,
        studies_by_state=counts,
        storage="degraded" if storage_degraded(state.settings) else "ok",
        degraded=degraded(state.database) if db_ok else [],
    )


@router.get(
    "/metrics", response_class=PlainTextResponse, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
def metrics(state: State) -> Response:
    """Prometheus metrics (no patient data)."""
    return Response(state.metrics(), media_type=CONTENT_TYPE_LATEST)
