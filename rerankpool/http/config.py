"""What a gateway needs to know: where the broker is, where to listen, keys, deadlines and limits."""

from __future__ import annotations

from dataclasses import dataclass

from rerankpool.client._base import DEFAULT_ADDRESS
from rerankpool.security.client import ClientSecurity

DEADLINE_HEADER = "x-request-timeout-ms"  # a caller's deadline for one request, in milliseconds


@dataclass(frozen=True)
class GatewayConfig:
    connect: str = DEFAULT_ADDRESS  # the broker's frontend
    listen: str = "127.0.0.1:8080"  # HOST:PORT
    processes: int = 1  # gateway processes sharing the listening socket
    api_keys: tuple[str, ...] = ()  # Bearer tokens accepted; none: no authentication
    timeout_s: float = 30.0  # the deadline of a request that names none in DEADLINE_HEADER
    max_timeout_s: float = 600.0  # the longest deadline a caller may ask for
    max_body_bytes: int = 16 * 2**20  # larger bodies get 413 before they are read
    health_timeout_s: float = 2.0  # how long /health waits for the broker
    security: ClientSecurity | None = None  # CURVE keys for a secured broker

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
