"""Logs the CURVE handshakes libzmq refuses before ZAP sees them, read from a socket monitor.

A peer with no key at all, or with the wrong *server* key, never reaches the ZAP handler:
libzmq reports it only through a socket monitor, which carries the bound endpoint and the
reason but not the peer's address; the warning says so.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from rerankpool.security.throttle import Throttle, held_back

logger = logging.getLogger("rerankpool.security")  # one logger for all of CURVE, the name the logs have always shown


_HANDSHAKE_HINTS = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        "it offered no CURVE key (a plain connection); give it --curve-key and --server-key",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        "the CURVE handshake did not decrypt: its --server-key is most likely not this broker's public key {pub}",
}


class HandshakeWatch(threading.Thread):
    """Reads one socket's monitor and logs handshakes libzmq refused before ZAP ever saw them."""

    EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_MONITOR_STOPPED

    def __init__(self, socket: zmq.Socket, label: str, server_public: bytes, throttle: Throttle) -> None:
        super().__init__(name=f"rerankpool-curve-watch-{label}", daemon=True)
        self.label = label
        self.server_public = server_public
        self.throttle = throttle
        self.stopping = threading.Event()
        address = f"inproc://rerankpool-curve-monitor-{id(self)}"
        socket.monitor(address, self.EVENTS)  # on the socket's own thread, as libzmq requires
        self.pipe = socket.context.socket(zmq.PAIR, socket_class=zmq.Socket)
        self.pipe.linger = 0
        self.pipe.connect(address)  # handed to the thread below; never touched here again

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self.pipe.poll(100):
                    continue
                event = recv_monitor_message(self.pipe)
                if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                    return
                self._report(event)
        except zmq.ZMQError as exc:  # the context went away under us
            logger.debug("handshake watch on %s ended: %s", self.label, exc)
        finally:
            self.pipe.close(0)

    def _report(self, event: dict[str, Any]) -> None:
        endpoint = event["endpoint"].decode("utf-8", "replace")
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # also port scanners and health checks
            logger.debug("%s (%s): a peer left during the handshake", self.label, endpoint)
            return
        code = int(event["value"])
        hint = _HANDSHAKE_HINTS.get(code, "not a rerankpool client or worker? (protocol error {code:#x})")
        held = self.throttle(("handshake", self.label, code))
        if held is not None:
            logger.warning("refused a peer on %s (%s): %s; libzmq does not report its address at this stage%s",
                           self.label, endpoint, hint.format(pub=self.server_public.decode(), code=code),
                           held_back(held))
