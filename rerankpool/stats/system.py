"""CPU and memory of the pool's processes and of the whole machine (psutil).

Columns:
    proc.<role>.cpu_pct    CPU of one process since the previous read, % of one
                           core (can exceed 100 on multi-core)
    proc.<role>.rss_mb     resident memory of one process, MB (MiB)
    system.cpu_pct         machine-wide CPU since the previous read, % of all cores
    system.cpu_steal_pct   CPU time the hypervisor gave to other guests while this
                           machine wanted it, % of all cores (virtual machines on Linux)
    system.mem_used_mb     machine memory in use (total - available), MB (MiB)
"""

from __future__ import annotations

import logging
import threading
from typing import Mapping

import psutil

from rerankpool.stats.probe import Readings, bytes_to_mb

log = logging.getLogger(__name__)


class ProcessProbe:
    """Per-process CPU% and RSS for named roles, plus machine-wide CPU and memory.

    ``pids`` maps a role name ("broker", "worker-0") to a pid. A process that
    has exited (or is a zombie waiting to be reaped) drops out: its columns
    are absent from later rows and one info line is logged. Use ``track`` to
    point a role at a respawned worker's new pid.

    CPU percentages are measured between consecutive ``read`` calls; the
    baseline is taken when a process starts being tracked, so the first read
    is already meaningful.
    """

    name = "process"

    def __init__(self, pids: Mapping[str, int], include_system: bool = True) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, psutil.Process] = {}
        self._include_system = include_system
        for role, pid in pids.items():
            self.track(role, pid)
        if include_system:
            psutil.cpu_percent(interval=None)  # baseline for the first read
            psutil.cpu_times_percent(interval=None)  # the same for the steal time

    def available(self) -> bool:
        """Always true: psutil works on every platform the pool supports."""
        return True

    def track(self, role: str, pid: int) -> None:
        """Start (or restart, after a respawn) reporting ``role`` as ``pid``."""
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(interval=None)  # baseline; first call always returns 0.0
        except psutil.NoSuchProcess:
            log.info("process probe: %s (pid %d) is not running; not tracking it", role, pid)
            with self._lock:
                self._procs.pop(role, None)
            return
        with self._lock:
            self._procs[role] = proc

    def untrack(self, role: str) -> None:
        """Stop reporting ``role`` (e.g. a worker shut down on purpose)."""
        with self._lock:
            self._procs.pop(role, None)

    def roles(self) -> list[str]:
        """Roles still being reported."""
        with self._lock:
            return list(self._procs)

    def read(self) -> Readings:
        """One row of readings; see the module docstring for column names."""
        row: Readings = {}
        with self._lock:
            procs = list(self._procs.items())
        for role, proc in procs:
            reading = self._read_process(role, proc)
            if reading is None:
                self._forget(role, proc)
            else:
                row.update(reading)
        if self._include_system:
            row["system.cpu_pct"] = float(psutil.cpu_percent(interval=None))
            # On a VM, a host that runs other guests stalls every process here at once;
            # steal time is the one place that shows it (absent off Linux).
            steal = getattr(psutil.cpu_times_percent(interval=None), "steal", None)
            if steal is not None:
                row["system.cpu_steal_pct"] = float(steal)
            vm = psutil.virtual_memory()
            row["system.mem_used_mb"] = bytes_to_mb(vm.total - vm.available)
            row["system.mem_total_mb"] = bytes_to_mb(vm.total)
        return row

    def _read_process(self, role: str, proc: psutil.Process) -> Readings | None:
        """Readings for one process, or None if it has gone (exited, zombie, pid reused)."""
        try:
            with proc.oneshot():
                if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                    return None
                cpu_pct = proc.cpu_percent(interval=None)
                rss_bytes = proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.AccessDenied:
            log.warning("process probe: access denied reading %s (pid %d); dropping it", role, proc.pid)
            return None
        return {f"proc.{role}.cpu_pct": float(cpu_pct), f"proc.{role}.rss_mb": bytes_to_mb(rss_bytes)}

    def _forget(self, role: str, proc: psutil.Process) -> None:
        with self._lock:
            # Only drop the role if track() has not re-pointed it meanwhile.
            if self._procs.get(role) is proc:
                del self._procs[role]
                log.info("process probe: %s (pid %d) has exited; its columns stop here", role, proc.pid)
