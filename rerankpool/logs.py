"""One logging setup for every rerankpool process, so broker and worker lines interleave readably."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | int | None = None, prefix: str = "") -> None:
    """Log to stderr as ``time level prefix[pid] logger: message``; level from $RERANKPOOL_LOG."""
    level = level or os.environ.get("RERANKPOOL_LOG", "INFO")
    tag = f"{prefix}[{os.getpid()}]" if prefix else f"[{os.getpid()}]"
    logging.basicConfig(
        level=level.upper() if isinstance(level, str) else level,
        format=f"%(asctime)s %(levelname)-7s {tag} %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
