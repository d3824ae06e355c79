"""A background thread that repeats one action at an interval: the study monitor, PACS delivery."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class PeriodicThread(threading.Thread):
    """Calls ``action`` at once and then every interval until stopped; a failing call is logged and
    tried again."""

    def __init__(self, name: str, action: Callable[[], object], interval_seconds: float) -> None:
        super().__init__(name=name, daemon=True)
        self._action = action
        self._interval = interval_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self._action()
            except Exception:  # process boundary: the loop must outlive a database hiccup
                logger.exception("%s pass failed; retrying in %.1f s", self.name, self._interval)
            if self._stop_event.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
