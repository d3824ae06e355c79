"""The Celery worker: JSON only, late acknowledgement, prefetch 1, time limits, one model per process."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from celery import Celery, Task
from celery.signals import worker_process_init

from inference import registry
from inference.breast import BreastPipeline
from inference.fracture import FracturePipeline
from inference.model import ModelUnavailable, load_model, pick_device
from inference.reports import ReportWriter
from inference.tasks import AnalyseStudyTask, PipelineRun, ReportNotAnalysedTask
from inference.withdrawal import WithdrawResultTask
from triage.evidence import Bars, Gatekeeper, OverridesFor, SwitchesFor
from triage.messages import ANALYSE_STUDY, REPORT_NOT_ANALYSED, WITHDRAW_RESULT
from triage.outcomes import Decision
from triage.pipelines import Pipeline
from triage.records import decision_changes, drift, overrides, switches
from triage.records.db import Database
from triage.records.outbox import make_celery, recorded_payload
from triage.settings import Settings

logger = logging.getLogger(__name__)

SOFT_TIME_LIMIT_SECONDS = 300
TIME_LIMIT_SECONDS = 360


class ModelPipelines(Mapping[Pipeline, PipelineRun]):
    """Each pipeline's model, loaded once per worker process on first use (after the fork).

    The model is the version promoted in the MLflow registry when there is one, else the bundled
    folder. Every ``model_check_seconds`` the worker asks the registry again and loads the newly
    promoted (or rolled-back) model before the next study: hot reload, no restart.
    """

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self._settings = settings
        self._database = database
        # The evidence gate at the site's bars, with the admins' overrides and the decisions switched
        # off from the database when there is one (a worker always has one; a test or a bench may
        # not: neither).
        self._gatekeeper = Gatekeeper(
            Bars.of(settings),
            _overrides(database) if database else None,
            _switches(database) if database else None,
        )
        self._loaded: dict[str, PipelineRun] = {}
        self._sources: dict[str, str] = {}
        self._checked: dict[str, float] = {}

    def __getitem__(self, name: Pipeline) -> PipelineRun:
        if name not in set(Pipeline):
            raise KeyError(name)
        name = Pipeline(name)
        pipeline = self._current(name, name, lambda: self._source(name))
        assert pipeline is not None, "production always has a source: the registry's or the bundled one"
        return pipeline

    def shadow(self, name: Pipeline) -> PipelineRun | None:
        """The candidate model in shadow mode for this pipeline, if any (checked like production)."""

        def lookup() -> str:
            version = registry.shadow(self._settings, name)
            return f"registry:{version}" if version else ""

        return self._current(f"shadow:{name}", name, lookup)

    def _current(self, key: str, name: Pipeline, lookup: Callable[[], str]) -> PipelineRun | None:
        """The pipeline ``lookup`` names (``registry:<version>``, ``bundled``, or "" for none), asked
        again every ``model_check_seconds``; a model that fails to load is asked for again next time."""
        now = time.monotonic()
        if key in self._checked and now - self._checked[key] < self._settings.model_check_seconds:
            return self._loaded.get(key)
        source = lookup()
        if self._sources.get(key) != source:
            if source:
                self._loaded[key] = self._load(name, source)
            else:
                self._loaded.pop(key, None)
            self._sources[key] = source
        self._checked[key] = now
        return self._loaded.get(key)

    def _source(self, name: Pipeline) -> str:
        """``registry:<version>`` when a version is promoted, else ``bundled``."""
        if not registry.registry_in_use(self._settings):
            return "bundled"  # no MLflow store: do not even import mlflow
        from mlflow.exceptions import MlflowException

        try:
            version = registry.production(self._settings, name)
        except (MlflowException, OSError) as error:
            if name in self._sources:  # keep running what was promoted when we last knew
                logger.warning("model registry unreachable (%s); keeping %s", error, self._sources[name])
                return self._sources[name]
            raise ModelUnavailable(f"the model registry cannot be read: {error}") from error
        return f"registry:{version}" if version else "bundled"

    def _load(self, name: Pipeline, source: str) -> PipelineRun:
        if source == "bundled":
            folder = self._settings.models_dir / name
        else:
            folder = registry.fetch(self._settings, name, source.removeprefix("registry:"))
        if not folder.is_dir():
            raise ModelUnavailable(f"no model folder {folder}")
        model = load_model(folder, pick_device(), self._settings.onnx_cache_dir)
        logger.info(
            "%s pipeline runs %s %s (%s) on %s with %d CPU thread(s)",
            name,
            model.card.name,
            model.card.version,
            source,
            model.device,
            torch.get_num_threads(),
        )
        if model.card.pipeline != name:
            raise ModelUnavailable(f"{folder} holds a {model.card.pipeline} model, not a {name} one")
        if self._database is not None:  # the drift statistics need its reference in every process
            with self._database.session() as session:
                drift.record_reference(
                    session, name, model.card.name, model.card.version, model.card.drift_reference,
                    self._database.now(),
                )  # fmt: skip
        if name == Pipeline.FRACTURE:
            return FracturePipeline(model, self._gatekeeper)
        return BreastPipeline(model, self._threshold, self._gatekeeper)

    def _threshold(self) -> int:
        """The single-reading threshold in force now: two admins may have changed the setting's."""
        if self._database is None:
            return self._settings.single_read_max_score
        with self._database.reading() as session:
            return decision_changes.single_read_threshold(
                session, self._settings.single_read_max_score, self._database.now()
            )

    def __iter__(self) -> Iterator[Pipeline]:
        return iter(Pipeline)

    def __len__(self) -> int:
        return len(Pipeline)


def _overrides(database: Database) -> OverridesFor:
    def read(model_name: str, model_version: str) -> Mapping[Decision, str]:
        with database.reading() as session:
            return overrides.in_force(session, model_name, model_version, database.now())

    return read


def _switches(database: Database) -> SwitchesFor:
    def read(pipeline: Pipeline) -> Mapping[Decision, str]:
        with database.reading() as session:
            return switches.switched_off(session, pipeline)

    return read


def threads_per_process(settings: Settings, concurrency: int, cpus: int | None = None) -> int:
    """Torch threads per worker process: the cores shared out, never oversubscribed (on a 2-core
    machine, two processes with two torch threads each ran 0.7 images/s in total, against 5.7 with
    one thread each)."""
    if settings.worker_threads:
        return settings.worker_threads
    return max(1, (cpus or os.cpu_count() or 1) // concurrency)


def _from_the_outbox(
    database: Database, name: str, run: Callable[[dict[str, Any]], str]
) -> Callable[..., str]:
    """A task that acts on the outbox's record of its message, not on what the broker delivered."""

    def task(self: Task, payload: dict[str, Any]) -> str:
        recorded = recorded_payload(database, self.request.id, name, payload)
        return "refused" if recorded is None else run(recorded)

    task.__name__ = name.rsplit(".", 1)[-1]
    return task


def make_worker_app(
    settings: Settings, database: Database, pipelines: Mapping[Pipeline, PipelineRun], concurrency: int = 1
) -> Celery:
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
    reports = ReportWriter(settings.results_dir, settings.mammography_cad_sr) if settings.pacs else None
    shadows = pipelines.shadow if isinstance(pipelines, ModelPipelines) else None
    body = AnalyseStudyTask(
        database, pipelines, settings.storage_dir, reports=reports, shadows=shadows,
        hold_after_claim_seconds=settings.fault_hold_after_claim_seconds,
    )  # fmt: skip
    threads = threads_per_process(settings, concurrency)

    @worker_process_init.connect(weak=False)  # type: ignore[untyped-decorator]
    def _child_started(**_: Any) -> None:
        torch.set_num_threads(threads)
        database.engine.dispose(close=False)  # connections must not cross a fork
        for name in pipelines:  # load models now, not during the first study's deadline
            try:
                pipelines[name]
            except ModelUnavailable as error:
                logger.warning("%s studies will not be analysed: %s", name, error)

    report_body = ReportNotAnalysedTask(database, settings.storage_dir, reports)
    withdraw_body = WithdrawResultTask(database, reports)
    bodies: dict[str, Callable[[dict[str, Any]], str]] = {
        ANALYSE_STUDY: body,
        REPORT_NOT_ANALYSED: report_body,
        WITHDRAW_RESULT: withdraw_body,
    }
    for task_name, run in bodies.items():
        app.task(name=task_name, bind=True, shared=False)(_from_the_outbox(database, task_name, run))

    logger.info(
        "worker: device %s, %d process(es), %d torch thread(s) each", pick_device(), concurrency, threads
    )
    return app
