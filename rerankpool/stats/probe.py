"""The contract every probe follows, and the unit conversions they share."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

# "MB" in every column name means MiB (2**20 bytes), as psutil users,
# nvidia-smi ("MiB") and Activity Monitor report memory.
BYTES_PER_MB: int = 1024 * 1024

Readings = dict[str, float]


@runtime_checkable
class Probe(Protocol):
    """Something the sampler can ask for one flat row of readings.

    A probe that does not apply on this machine reports ``available() ->
    False`` and reads as ``{}``; a reading it cannot take right now is left
    out of the dict, never filled with zero, so gaps stay visible in plots.
    """

    name: str

    def available(self) -> bool: ...

    def read(self) -> Readings: ...


def bytes_to_mb(n_bytes: float) -> float:
    """Bytes to MB (MiB), the unit every ``*_mb`` column uses."""
    return float(n_bytes) / BYTES_PER_MB
