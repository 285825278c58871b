"""What a worker tells the broker about its host with each heartbeat: CPU, memory, steal, and its GPUs.

The readings come from the stats module's probes (``ProcessProbe`` for the machine, ``NvmlProbe``
for NVIDIA GPUs, ``MetalProbe`` for a Mac's), flat as they name them (``system.cpu_pct``,
``gpu.0.util_pct``...). Every worker of a host sends its host's readings; the broker keeps the
latest per host name, for the dashboard.
"""

from __future__ import annotations

import logging
import socket

logger = logging.getLogger(__name__)


class HostSampler:
    """The machine's readings, ready for a heartbeat; never raises (a probe that fails is left out)."""

    def __init__(self, device: str) -> None:
        from rerankpool.stats import MetalProbe, NvmlProbe, ProcessProbe

        self.host = socket.gethostname()
        self.probes = [ProcessProbe({}, include_system=True)]
        extra = NvmlProbe() if device.startswith("cuda") else MetalProbe() if device in ("mps", "gpu") else None
        if extra is not None and extra.available():
            self.probes.append(extra)

    def read(self) -> dict[str, float]:
        sample: dict[str, float] = {}
        for probe in self.probes:
            try:
                sample.update(probe.read())
            except Exception as exc:  # a probe's failure must not cost the heartbeat
                logger.debug("%s probe failed: %s", probe.name, exc)
        return sample
