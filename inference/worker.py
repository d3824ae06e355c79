"""The Celery worker: JSON only, late acknowledgement, prefetch 1, time limits, one process per model."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from dicom_node.dispatch import ANALYSE_STUDY, make_celery
from inference.tasks import AnalyseStudyTask, Pipeline
from triage.settings import Settings
from worklist.db import Database

logger = logging.getLogger(__name__)

SOFT_TIME_LIMIT_SECONDS = 300
TIME_LIMIT_SECONDS = 360


def make_worker_app(settings: Settings, database: Database, pipelines: dict[str, Pipeline]) -> Celery:
    """Build the worker's Celery app with ``triage.analyse_study`` bound to this database."""
    app = make_celery(settings, name="triage-worker")
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=SOFT_TIME_LIMIT_SECONDS,
        task_time_limit=TIME_LIMIT_SECONDS,
        worker_hijack_root_logger=False,
    )
    body = AnalyseStudyTask(database, pipelines)

    @app.task(name=ANALYSE_STUDY)  # type: ignore[untyped-decorator]
    def analyse_study(payload: dict[str, Any]) -> str:
        return body(payload)

    return app
