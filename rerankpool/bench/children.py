"""Results from the bench's helper processes, without waiting on one that died."""

from __future__ import annotations

import queue


def collect(results, children: list, count: int) -> list:
    """``count`` items from a queue the ``children`` processes fill; raises if one dies first."""
    items: list = []
    while len(items) < count:
        try:
            items.append(results.get(timeout=1.0))
        except queue.Empty:
            failed = [c for c in children if not c.is_alive() and c.exitcode]
            if failed or not any(c.is_alive() for c in children):
                why = f"{failed[0].name} exited with status {failed[0].exitcode}" if failed else "all exited"
                raise RuntimeError(f"{why} before reporting: see the log above") from None
    for child in children:
        child.join()
    return items
