"""``rerankpool worker -n N``: start N worker processes and keep them running.

A worker that crashes is restarted with backoff. A worker that cannot start at all
(bad model, bad device: exit status 2 or 3) stops the whole pool, since restarting
it would fail the same way. With ``--device-process`` the pool also runs one device
process per device (``rerankpool.worker.device.server``), supervised the same way;
it starts first and stops last, after its workers have finished their batches.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from dataclasses import replace
from multiprocessing.connection import wait

from rerankpool.worker.config import WorkerConfig
from rerankpool.worker.device.server import DEFAULT_PASS_TOKENS, DeviceProcessConfig, device_endpoint

logger = logging.getLogger(__name__)

FATAL_EXIT = (2, 3)  # could not start / refused by the broker


def thread_env(threads: int | None, device: str) -> dict[str, str]:
    """Environment that sizes a worker's thread pools; set before any runtime is imported.

    With a GPU doing the model, OpenMP threads exist only for the tokenizer, in bursts:
    they sleep between batches (``PASSIVE``) instead of spinning on cores that the other
    workers' tokenizers need.
    """
    env = {"RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)} if threads else {}
    if device != "cpu":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _child(config: WorkerConfig | DeviceProcessConfig) -> None:
    """Child entry point: size thread pools before any runtime is imported, then serve."""
    worker = config.worker if isinstance(config, DeviceProcessConfig) else config
    for key, value in thread_env(worker.threads, worker.device).items():
        os.environ.setdefault(key, value)
    if isinstance(config, DeviceProcessConfig):
        from rerankpool.worker.device.server import run_device_process

        raise SystemExit(run_device_process(config))
    from rerankpool.worker.loop import run_worker

    raise SystemExit(run_worker(config))


def default_threads(workers: int, on_cpu: bool, cores: int | None = None) -> int:
    """Threads per worker for intra-op CPU inference and the tokenizer.

    On a CPU the workers share the cores. With a GPU doing the model, the tokenizers are
    the work: twice as many threads as cores over all workers (measured on a 16-core H100
    host: 4 workers x 8 threads beat 4 x 16 in throughput and latency, and 4 x 16 beat 4 x 4).
    """
    cores = cores or os.cpu_count() or 1
    return max(1, cores // workers) if on_cpu else min(cores, max(1, 2 * cores // workers))


def worker_configs(base: WorkerConfig, n: int, devices: list[str] | None = None, first: int = 0) -> list[WorkerConfig]:
    """N configs from one: names worker-FIRST..FIRST+N-1, devices assigned round robin."""
    configs = []
    for i in range(n):
        device = devices[i % len(devices)] if devices else base.device
        configs.append(replace(base, device=device, name=f"worker-{first + i}"))
    return configs


def with_device_processes(configs: list[WorkerConfig], pass_tokens: int = DEFAULT_PASS_TOKENS,
                          ) -> tuple[list[DeviceProcessConfig], list[WorkerConfig]]:
    """One device process per device and model the workers use (it loads one model), and the workers pointed
    at theirs."""
    runs: dict[tuple[str, str], DeviceProcessConfig] = {}
    for c in configs:
        if (c.device, c.model) not in runs:
            slot = sum(device == c.device for device, _ in runs)  # device-cuda:0, device-cuda:0-1, ...
            runs[c.device, c.model] = DeviceProcessConfig(
                replace(c, name=f"device-{c.device}" + (f"-{slot}" if slot else "")),
                device_endpoint(c.device, slot), pass_tokens)
    return list(runs.values()), [replace(c, device_endpoint=runs[c.device, c.model].endpoint) for c in configs]


class WorkerSupervisor:
    def __init__(self, configs: list[WorkerConfig], restart_backoff_max_s: float = 30.0,
                 device_processes: list[DeviceProcessConfig] = ()) -> None:
        self.configs = configs
        self.restart_backoff_max_s = restart_backoff_max_s
        self._members: list[WorkerConfig | DeviceProcessConfig] = [*device_processes, *configs]
        self._devices = len(device_processes)  # the first members: started first, stopped last
        self._mp = mp.get_context("spawn")
        self._procs: list[mp.process.BaseProcess | None] = [None] * len(self._members)
        self._stopping = threading.Event()
        self.failure: str | None = None

    @property
    def pids(self) -> dict[str, int]:
        return {m.name: p.pid for m, p in zip(self._members, self._procs) if p is not None and p.pid}

    def _spawn(self, i: int) -> None:
        member = self._members[i]
        proc = self._mp.Process(target=_child, args=(member,), name=member.name, daemon=False)
        proc.start()
        self._procs[i] = proc

    def start(self) -> None:
        for i in range(len(self._members)):
            self._spawn(i)
        logger.info("started %d worker process(es)%s", len(self.configs),
                    f" and {self._devices} device process(es)" if self._devices else "")

    def supervise(self) -> None:
        """Block, restarting crashed workers and device processes, until ``stop()`` or a fatal start failure."""
        backoff = [1.0] * len(self._members)
        while not self._stopping.is_set():
            sentinels = {p.sentinel: i for i, p in enumerate(self._procs) if p is not None}
            ready = wait(list(sentinels), timeout=0.5)
            for sentinel in ready:
                i = sentinels[sentinel]
                proc = self._procs[i]
                assert proc is not None
                proc.join()
                if self._stopping.is_set():
                    return
                if proc.exitcode in FATAL_EXIT:
                    self.failure = f"{self._members[i].name} could not start (exit {proc.exitcode}); see its log above"
                    logger.error("%s: stopping the pool", self.failure)
                    self.stop()
                    return
                logger.warning("%s exited with %s; restarting in %.0f s", proc.name, proc.exitcode, backoff[i])
                if self._stopping.wait(backoff[i]):
                    return
                backoff[i] = min(backoff[i] * 2, self.restart_backoff_max_s)
                self._spawn(i)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every worker (they finish their batches and say goodbye), then SIGKILL stragglers.

        Device processes go last: the workers' last batches still run on them.
        """
        self._stopping.set()
        self._stop_procs(self._procs[self._devices:], timeout_s)
        self._stop_procs(self._procs[: self._devices], timeout_s)

    @staticmethod
    def _stop_procs(procs: list[mp.process.BaseProcess | None], timeout_s: float) -> None:
        procs = [p for p in procs if p is not None]
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                logger.warning("%s did not stop in %.0f s; killing it", proc.name, timeout_s)
                proc.kill()
                proc.join()
