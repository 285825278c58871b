"""Holds back repeats of a warning, so a peer retrying every 100 ms can't flood the broker's log."""

from __future__ import annotations

import threading
import time


class Throttle:
    """Says whether to log a warning now; the ZAP thread and the handshake watches share one."""

    def __init__(self, interval_s: float, max_keys: int = 1024) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[tuple, list[float | int]] = {}  # key -> [last logged, suppressed since]
        self._lock = threading.Lock()

    def __call__(self, key: tuple) -> int | None:
        """None: stay quiet; else the number of repeats held back since the last line."""
        now = time.monotonic()
        with self._lock:
            entry = self._last.get(key)
            if entry is not None and now - entry[0] < self.interval_s:
                entry[1] += 1
                return None
            if len(self._last) >= self.max_keys:
                self._last.clear()
            self._last[key] = [now, 0]
            return int(entry[1]) if entry else 0


def held_back(held: int) -> str:
    """The tail of a warning line that says how many repeats were held back."""
    return f" ({held} more like it held back)" if held else ""
