"""The queues radiologists work from, and the cheap revision number the page polls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from triage.records import decision_changes, queries, switches
from triage.records.audit_actions import AuditAction
from triage.records.tables import StudyState
from worklist import views
from worklist.deps import Anyone, Radiologist, State, audit
from worklist.operations import storage_degraded
from worklist.schemas import AUTH, TEXT, Instant, Revision, WorklistPage

router = APIRouter(prefix="/api/worklist", tags=["worklist"])


@router.get("", responses=AUTH)
def worklist(
    principal: Radiologist,
    state: State,
    queue: views.Queue = views.Queue.ALL,
    study_state: Annotated[StudyState | None, Query(alias="state")] = None,
    received_from: Instant | None = None,
    received_to: Instant | None = None,
    search: Annotated[str, Query(max_length=64, pattern=TEXT)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> WorklistPage:
    """One queue's studies, most urgent first; every study listed is audited as viewed."""
    filters = views.WorklistFilters(
        queue=queue,
        state=study_state,
        received_from=received_from,
        received_to=received_to,
        search=search,
        limit=limit,
    )
    with state.database.reading() as session:
        items = views.worklist(session, filters)
        page = WorklistPage(
            queue=queue,
            items=items,
            single_read_max_score=decision_changes.single_read_threshold(
                session, state.settings.single_read_max_score, state.database.now()
            ),
            revision=views.revision(session),
            storage_degraded=storage_degraded(state.settings),
            degraded=queries.degraded(session, state.database.now()),
            switched_off=[
                f"{switch.decision.label} is switched off for {switch.pipeline} studies: {switch.reason}"
                for switch in switches.states(session)
                if switch.off
            ],
            pacs_viewer=state.settings.pacs_viewer_url is not None,
        )
    with state.database.session() as session:  # the audit row alone holds the write lock
        audit(
            session,
            principal,
            AuditAction.WORKLIST_VIEWED,
            [item.study_id for item in items],
            f"queue {queue}",
        )
    return page


@router.get("/revision", responses=AUTH)
def worklist_revision(principal: Anyone, state: State) -> Revision:
    """Cheap to poll, no patient data: the page reloads its queue only when this changes."""
    with state.database.reading() as session:
        return Revision(revision=views.revision(session))
