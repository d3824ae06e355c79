"""Rendered images kept in memory: a study page asks for the same few images again and again (each
reader, each poll, the double reader after the first), and decoding a mammogram takes a CPU
second. Bounded in bytes, least recently used first out; keyed by storage key and size, so a new
version of an image (another storage key) is never answered from an old rendering."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rendered:
    png: bytes
    rows: int  # of the source image: the coordinates boxes are drawn in
    columns: int
    frames: int


class RenderCache:
    """At most ``max_bytes`` of PNGs; ``get`` renders on a miss (outside the lock)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, int], Rendered] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key: str, size: int, render: Callable[[], Rendered]) -> Rendered:
        with self._lock:
            found = self._items.get((key, size))
            if found is not None:
                self._items.move_to_end((key, size))
                self.hits += 1
                return found
            self.misses += 1
        made = render()
        if len(made.png) <= self._max:
            with self._lock:
                if (key, size) not in self._items:
                    self._items[(key, size)] = made
                    self._bytes += len(made.png)
                while self._bytes > self._max:
                    _, dropped = self._items.popitem(last=False)
                    self._bytes -= len(dropped.png)
        return made
