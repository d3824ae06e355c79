"""Progress of long work as people expect it: a bar redrawn in place with the rate and the time left
on a terminal; on a log (not a terminal), one line per epoch, or per tenth of the work, and no bar."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from training.loop import Step

_WIDTH = 30


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class ProgressBar:
    """Draws training steps and counted work (images scored) on standard error."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._terminal = self._stream.isatty()
        self._started = time.monotonic()
        self._epoch: tuple[int, float] = (0, self._started)  # the epoch shown and when it started
        self._last_tenth = -1

    def _draw(self, done: int, total: int, text: str, unit: str, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        filled = round(_WIDTH * done / max(total, 1))
        bar = "#" * filled + "-" * (_WIDTH - filled)
        line = (
            f"{text} [{bar}] {done}/{total} {rate:.2f} {unit}/s, "
            f"{_clock(elapsed)} elapsed, {_clock(left)} left"
        )
        self._stream.write(f"\r{line}\x1b[K" if self._terminal else f"{line}\n")
        if self._terminal and done >= total:
            self._stream.write("\n")
        self._stream.flush()

    def training(self, step: Step) -> None:
        """One training batch done; on a log only the end of each epoch is written."""
        if self._epoch[0] != step.epoch:
            self._epoch = (step.epoch, time.monotonic())
        if not self._terminal and step.batch != step.batches:
            return
        text = f"epoch {step.epoch}/{step.epochs} loss {step.loss:.4f}"
        self._draw(step.batch, step.batches, text, "batches", time.monotonic() - self._epoch[1])

    def counted(self, done: int, total: int) -> None:
        """``done`` of ``total`` items (images) finished."""
        tenth = 10 * done // max(total, 1)
        if not self._terminal and tenth == self._last_tenth:
            return
        self._last_tenth = tenth
        self._draw(done, total, "scoring", "images", time.monotonic() - self._started)
