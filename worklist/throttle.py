"""Sign-in throttling: refused sign-ins counted per account and per source in a sliding window.

argon2 is deliberately slow, so an unthrottled flood of sign-ins is both a password-guessing
attack and a way to burn the API's CPU. Past the limit a sign-in is answered 429 with Retry-After
before any password is verified. The counts live in the API process (one per deployment); a
restart forgets them, which costs an attacker a restart they cannot cause.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

SOURCE_FACTOR = 4  # a source (an address, or a proxy in front of many users) may fail this much more


class SignInThrottle:
    def __init__(self, max_failures: int, window_seconds: float) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, username: str, source: str, now: float) -> float:
        """Seconds until ``username`` may try again from ``source``; 0 when it may now."""
        with self._lock:
            waits = [
                self._wait(f"account:{username.casefold()}", self._max, now),
                self._wait(f"source:{source}", self._max * SOURCE_FACTOR, now),
            ]
        return max(waits)

    def failed(self, username: str, source: str, now: float) -> None:
        with self._lock:
            for key in (f"account:{username.casefold()}", f"source:{source}"):
                self._failures[key].append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"account:{username.casefold()}", None)

    def _wait(self, key: str, limit: int, now: float) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        return times[len(times) - limit] + self._window - now
