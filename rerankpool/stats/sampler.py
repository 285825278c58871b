"""Background sampling of probes and pool statistics into a JSON Lines file."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Sequence

from rerankpool.stats.probe import Probe
from rerankpool.stats.timeseries import row_to_json

log = logging.getLogger(__name__)

PoolStats = Callable[[], dict[str, Any]]


def next_tick(start_s: float, interval_s: float, now_s: float) -> tuple[int, float]:
    """Index and monotonic deadline of the first tick strictly after ``now_s``.

    Ticks sit at ``start_s + k * interval_s``, so sampling does not drift by
    the time each sample takes; ticks missed because a sample overran are
    skipped rather than fired back to back.
    """
    k = math.floor((now_s - start_s) / interval_s) + 1
    return k, start_s + k * interval_s


class Sampler:
    """Takes one row every ``interval_s`` on a background thread.

    A row is ``t`` (unix time), ``elapsed_s`` (monotonic seconds since
    ``start``), every available probe's readings, then ``pool_stats()``'s
    flat dict. Each row is appended to ``out_path`` as one JSON line and
    flushed at once, so a crash still leaves the data; the last ``max_rows``
    rows are also kept in memory for ``rows()``.

    A probe or ``pool_stats`` that raises costs only its own columns in that
    row (with one warning per source); sampling carries on. Probes are owned
    by the caller: the sampler neither opens nor closes them.

    Use as a context manager, or call ``start()`` / ``stop()`` (once each:
    a stopped sampler is not restarted; make a new one).
    """

    def __init__(
        self,
        out_path: Path,
        interval_s: float = 0.25,
        probes: Sequence[Probe] = (),
        pool_stats: PoolStats | None = None,
        max_rows: int = 100_000,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.out_path = Path(out_path)
        self.interval_s = interval_s
        self.probes = list(probes)
        self.pool_stats = pool_stats
        self._rows: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_rows)
        self._rows_taken = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._warned: set[str] = set()
        self._start_s = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Sampler:
        """Open ``out_path`` (replacing it) and start sampling; the first row is taken at once."""
        if self._thread is not None:
            raise RuntimeError("Sampler already started")
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.out_path.open("w", encoding="utf-8")
        active = [p for p in self.probes if self._probe_available(p)]
        skipped = [getattr(p, "name", type(p).__name__) for p in self.probes if p not in active]
        self.probes = active
        log.info(
            "sampler: every %.3f s to %s; probes %s%s",
            self.interval_s, self.out_path, [getattr(p, "name", type(p).__name__) for p in active],
            f" (not available here: {skipped})" if skipped else "",
        )
        self._stop.clear()
        self._start_s = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rerankpool-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sampling (wakes the thread at once) and close the file. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("sampler: thread still busy after %.1f s (a slow probe?)", timeout_s)
        with self._cond:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ results

    def rows(self) -> list[dict[str, Any]]:
        """Copy of the rows kept in memory (the most recent ``max_rows``)."""
        with self._cond:
            return list(self._rows)

    @property
    def rows_taken(self) -> int:
        """Rows taken since start, including any that fell out of memory."""
        with self._cond:
            return self._rows_taken

    def wait_for_rows(self, count: int, timeout_s: float) -> bool:
        """Block until at least ``count`` rows have been taken; False on timeout or stop."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._rows_taken < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._stop.is_set() and not self._is_running()):
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    # ------------------------------------------------------------------ sampling

    def _is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            self._take_row()
            late_tick, _ = next_tick(self._start_s, self.interval_s, time.monotonic())
            if late_tick > tick + 1:
                log.debug("sampler: a sample overran; skipping %d ticks", late_tick - tick - 1)
            # max(): a wait that wakes a hair early must not fire the same tick twice
            tick = max(tick + 1, late_tick)
            deadline = self._start_s + tick * self.interval_s
            if self._stop.wait(max(0.0, deadline - time.monotonic())):
                break
        with self._cond:
            self._cond.notify_all()

    def _take_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time(), "elapsed_s": time.monotonic() - self._start_s}
        for probe in self.probes:
            row.update(self._call(getattr(probe, "name", type(probe).__name__), probe.read))
        if self.pool_stats is not None:
            row.update(self._call("pool_stats", self.pool_stats))
        line = row_to_json(row)
        with self._cond:
            self._rows.append(row)
            self._rows_taken += 1
            self._write(line)
            self._cond.notify_all()
        return row

    def _call(self, source: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """``fn()``'s dict, or ``{}`` (warning once per source) if it raises or returns a non-dict."""
        try:
            result = fn()
            if not isinstance(result, dict):
                raise TypeError(f"expected a dict, got {type(result).__name__}")
            return result
        except Exception:
            if source not in self._warned:
                self._warned.add(source)
                log.warning("sampler: %s failed; its columns are absent from such rows", source, exc_info=True)
            return {}

    def _write(self, line: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:  # disk full, file closed under us
            if "write" not in self._warned:
                self._warned.add("write")
                log.warning("sampler: writing %s failed (%s); rows kept in memory only", self.out_path, exc)

    @staticmethod
    def _probe_available(probe: Probe) -> bool:
        try:
            return bool(probe.available())
        except Exception as exc:
            log.warning("sampler: %r.available() raised %s; skipping it", probe, exc)
            return False
