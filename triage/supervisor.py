"""``triage serve``'s supervision of its three processes: each one that exits is started again after
a backoff, none is ever given up, and one child's crash loop never stops the others.

DICOM ingest must go on whatever the worker or the API do: a study received while no worker runs
is queued in the database and goes conservative at its deadline, visibly; a study a PACS could not
send is a study lost to triage. So the listener is never stopped for a sibling's sake, and a child
that keeps stopping is marked in the database (``peer_status``, name ``process:<child>``), where
``/readyz`` and the worklist page show it as degraded.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from triage.records import results
from triage.records.db import Database
from triage.records.tables import PROCESS_STATUS_PREFIX

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


@dataclass
class Restarts:
    """When a child stopped lately, and when it may start again: a backoff that doubles with each
    stop inside ``window_seconds`` (``base_seconds`` after the first), up to five minutes."""

    base_seconds: float = 1.0
    window_seconds: float = 600.0
    crash_loop: int = 5  # stops inside the window that make the child count as crash-looping
    stops: list[float] = field(default_factory=list)

    def stopped(self, now: float) -> float:
        """Record a stop at ``now``; returns how long to wait before the next start."""
        self.stops = [t for t in self.stops if now - t < self.window_seconds] + [now]
        return min(MAX_BACKOFF_SECONDS, self.base_seconds * 2.0 ** (len(self.stops) - 1))

    def looping(self, now: float) -> bool:
        return sum(now - t < self.window_seconds for t in self.stops) >= self.crash_loop


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    restarts: Restarts
    start_at: float | None = None  # stopped: when to start it again


class Supervisor:
    """Starts the children, and starts each again after its backoff whenever it stops."""

    def __init__(
        self,
        start: Callable[[str], subprocess.Popen[bytes]],
        names: Sequence[str],
        database: Database,
        backoff_base_seconds: float = 1.0,
    ) -> None:
        self._start = start
        self._database = database
        self.children = {n: Child(n, start(n), Restarts(base_seconds=backoff_base_seconds)) for n in names}
        for name in names:
            self._record(name, True, "running")

    def check(self, now: float) -> None:
        """One look at every child: note a stop, start again what is due."""
        for child in self.children.values():
            if child.start_at is None and child.process.poll() is not None:
                wait = child.restarts.stopped(now)
                child.start_at = now + wait
                looping = child.restarts.looping(now)
                recent = len(child.restarts.stops)
                detail = (
                    f"the {child.name} stopped (exit {child.process.returncode}), {recent} time(s) in "
                    f"{child.restarts.window_seconds / 60:g} min; starting it again in {wait:g} s"
                )
                logger.error("%s", detail)
                self._record(child.name, not looping, detail)
            elif child.start_at is not None and now >= child.start_at:
                child.process, child.start_at = self._start(child.name), None
                logger.info("the %s started again", child.name)
                if not child.restarts.looping(now):
                    self._record(child.name, True, "running")

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM every running child, then SIGKILL whichever outlives the grace."""
        running = [c.process for c in self.children.values() if c.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + grace_seconds
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        for name in self.children:
            self._record(name, True, "stopped with triage serve")

    def _record(self, name: str, healthy: bool, detail: str) -> None:
        try:
            with self._database.session() as session:
                results.record_peer_status(
                    session, PROCESS_STATUS_PREFIX + name, healthy, detail, self._database.now()
                )
        except SQLAlchemyError:  # the supervisor outlives a database that is down
            logger.warning("could not record the %s's state: the database did not answer", name)
