"""Run the gateway: one process, or N processes on one port.

The port is bound here before any process serves, so the address is known (``--listen
HOST:0`` picks a free port, and the ready line names it) and the ready line comes only
once every process listens. On Linux each process listens on its own socket with
``SO_REUSEPORT``, and the kernel spreads connections evenly over them; elsewhere they
share one socket (where one process may accept most of a burst). A gateway process
that dies is started again: it holds nothing that needs saving.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from typing import Callable

from rerankpool.http.config import GatewayConfig
from rerankpool.security.endpoints import is_public_endpoint

logger = logging.getLogger(__name__)

RESTART_BACKOFF_S = 1.0


REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind(config: GatewayConfig, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted connections inherit this: a reply's headers and body go out as two writes, and
    # with Nagle on, the body waits for the ACK of the headers, which a client delays ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {config.listen}: {exc.strerror}; pick another --listen HOST:PORT") from exc
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run_one(config: GatewayConfig, sock: socket.socket | None, log_level: str, listening=None) -> None:
    """One gateway process: the app under uvicorn, on the shared socket or (None) a SO_REUSEPORT one of its own."""
    import uvicorn

    from rerankpool.http.app import create_app
    from rerankpool.logs import setup_logging

    setup_logging(log_level, prefix="http")
    if sock is None:
        sock = bind(config, reuse_port=True)
    if listening is not None:
        listening.release()
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level=log_level.lower(), access_log=False,
                                           timeout_graceful_shutdown=5, server_header=False))
    server.run(sockets=[sock])


def serve(config: GatewayConfig, log_level: str = "INFO", on_listening: Callable[[str], None] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code.

    ``on_listening`` gets the URL once every process listens.
    """
    if is_public_endpoint(f"tcp://{config.listen}") and not config.api_keys:
        logger.warning("the gateway listens on %s without an API key: anyone who can reach it can use the pool "
                       "(give --api-key or --api-keys-file)", config.listen)
    several = config.processes > 1
    sock = bind(config, reuse_port=several and REUSE_PORT, listen=not (several and REUSE_PORT))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"

    def ready() -> None:
        logger.info("rerankpool http: listening on %s (%d process%s), broker %s", url, config.processes,
                    "" if config.processes == 1 else "es", config.connect)
        if on_listening is not None:
            on_listening(url)

    if not several:
        ready()
        _run_one(config, sock, log_level)
        return 0
    with tempfile.TemporaryDirectory(prefix="rerankpool-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any child imports prometheus_client
        # With SO_REUSEPORT the parent's socket only holds the port: each process binds its own to it.
        return _supervise(replace(config, listen=f"{shown}:{port}"), None if REUSE_PORT else sock, log_level, ready)


def _supervise(config: GatewayConfig, sock: socket.socket | None, log_level: str, ready: Callable[[], None]) -> int:
    ctx = mp.get_context("spawn")
    stopping = {"now": False}
    listening = ctx.Semaphore(0)

    def start(i: int) -> mp.Process:
        proc = ctx.Process(target=_run_one, args=(config, sock, log_level, listening), name=f"gateway-{i}")
        proc.start()
        return proc

    def stop(signum, frame) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    procs = [start(i) for i in range(config.processes)]
    for _ in procs:
        if not listening.acquire(timeout=60):
            stopping["now"] = True
            logger.error("a gateway process did not start listening within 60 s")
            break
    else:
        ready()
    while not stopping["now"]:
        for i, proc in enumerate(procs):
            proc.join(timeout=0.2 / len(procs))
            if proc.exitcode is not None and not stopping["now"]:
                logger.error("gateway process %s exited with %s; starting it again", proc.name, proc.exitcode)
                time.sleep(RESTART_BACKOFF_S)  # a crash loop must not spin
                procs[i] = start(i)
    for proc in procs:
        if proc.exitcode is None:
            proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight
    for proc in procs:
        proc.join(timeout=10)
        if proc.exitcode is None:
            proc.kill()
    if sock is not None:
        sock.close()
    return 0


def start_process(config: GatewayConfig, log_level: str | None, timeout_s: float = 60.0) -> tuple[mp.Process, str]:
    """The gateway in a process of its own (``up --http``, the bench): the process and its URL.

    ``terminate()`` stops it, and it stops its own processes.
    """
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_serve_child, args=(config, log_level or "INFO", sender), name="http")
    proc.start()
    sender.close()
    if not receiver.poll(timeout_s):
        proc.terminate()
        raise RuntimeError(f"the HTTP gateway did not start listening on {config.listen} within {timeout_s:.0f} s")
    try:
        return proc, receiver.recv()
    except EOFError:
        proc.join(timeout=5)
        raise RuntimeError(f"the HTTP gateway exited with {proc.exitcode} before listening on {config.listen}; "
                           "see its log above") from None


def _serve_child(config: GatewayConfig, log_level: str, ready) -> None:
    from rerankpool.logs import setup_logging

    setup_logging(log_level, prefix="http")
    serve(config, log_level, on_listening=ready.send)
