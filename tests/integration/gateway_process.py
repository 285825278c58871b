"""A real ``rerankpool http`` process for tests: started on a free port, its address read from its ready line."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

READY = re.compile(r"listening on (http://\S+) ")


class GatewayProcess:
    """``rerankpool http --listen 127.0.0.1:0 ARGS``; ``url`` is known once it listens."""

    def __init__(self, connect: str, *args: str, start_timeout_s: float = 60.0) -> None:
        self.cmd = [sys.executable, "-m", "rerankpool", "http", "--connect", connect, "--listen", "127.0.0.1:0", *args]
        self.start_timeout_s = start_timeout_s
        self.lines: list[str] = []
        self.url = ""
        self._ready = threading.Event()

    def _drain(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line)
            match = READY.search(line)
            if match and not self.url:
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended: wake the waiter, which sees no url

    def __enter__(self) -> "GatewayProcess":
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(self.start_timeout_s) or not self.url:
            self.stop()
            raise RuntimeError("the gateway did not start:\n" + "".join(self.lines[-30:]))
        return self

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()
