"""The broker's side of CURVE: its key pair, the keys it admits, and the running authenticator.

The authenticator must run on the *same* context as the sockets, and each socket must be
secured *before* bind::

    auth = server.start(ctx)                 # ZAP handler thread on ctx
    sock = ctx.socket(zmq.ROUTER); server.apply(sock, role="frontend"); sock.bind(...)
    ...; sock.close(); auth.stop()           # sockets first, then auth, then ctx.term()

libzmq admits *any* CURVE key when no ZAP handler runs on the context, which is why
``apply`` refuses without ``start`` and ``stop`` closes secured sockets left open.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq

from rerankpool.security.client import ClientSecurity
from rerankpool.security.keys import (
    PUBLIC_SUFFIX,
    KeyPair,
    SecurityError,
    load_authorized_keys,
    load_keypair,
    require_curve,
)
from rerankpool.security.throttle import Throttle
from rerankpool.security.watch import HandshakeWatch
from rerankpool.security.zap import ZapAuthenticator

logger = logging.getLogger("rerankpool.security")  # one logger for all of CURVE, the name the logs have always shown

REPEAT_WARNING_S = 60.0


_RUNNING: dict[int, "BrokerAuth"] = {}  # id(context) -> its authenticator; it holds the context alive
_RUNNING_LOCK = threading.Lock()


class BrokerAuth:
    """A running authenticator on one context: secures sockets, and must be stopped before ``ctx.term()``."""

    def __init__(self, security: "ServerSecurity", ctx: zmq.Context, repeat_warning_s: float) -> None:
        keys = security.authorized_keys()
        self.security = security
        self.context = ctx
        self.throttle = Throttle(repeat_warning_s)
        self._watches: list[HandshakeWatch] = []
        self._sockets: list[zmq.Socket] = []
        where = str(security.authorized_dir) if security.authorized_dir else "an --authorized-keys directory"
        self._auth = ZapAuthenticator(ctx, keys, where, self.throttle)
        with _RUNNING_LOCK:
            if id(ctx) in _RUNNING:
                raise SecurityError("CURVE authentication already runs on this zmq context: start it once per "
                                    "context and secure every broker socket through that one")
            try:
                self._auth.start()
            except zmq.ZMQError as exc:
                self._auth.stop()  # closes the half-made ZAP socket, or ctx.term() would hang
                raise SecurityError(f"could not start the ZAP handler ({exc}): something else on this zmq "
                                    "context already bound inproc://zeromq.zap.01") from None
            self._auth.configure_curve_callback("*", credentials_provider=self._auth)
            _RUNNING[id(ctx)] = self
        others = len(keys) - (security.keypair.public in keys)
        logger.info("CURVE on: admitting %d authorized key(s) from %s plus this broker's own key %s",
                    others, security.authorized_dir or "(no directory)", security.keypair.public_text)

    @property
    def running(self) -> bool:
        return self._auth.is_alive()

    def secure(self, socket: zmq.Socket, role: str = "broker") -> None:
        """Make ``socket`` a CURVE server admitted through this authenticator; call before ``bind``.

        ``role`` becomes the socket's ZAP domain, so refusals say "on frontend" or "on backend".
        Takes the socket's monitor (libzmq allows one per socket) to log failed handshakes.
        """
        if not role:
            raise SecurityError("role names the socket in the logs and must not be empty, e.g. 'frontend'")
        if socket.context is not self.context:
            raise SecurityError("this socket belongs to another zmq context than the authenticator: start "
                                "ServerSecurity on the context the broker's sockets are made from")
        if not self.running:
            raise SecurityError("the authenticator is stopped: call ServerSecurity.start(ctx) again first")
        keypair = self.security.keypair
        socket.curve_secretkey = keypair.require_secret("the broker")
        socket.curve_publickey = keypair.public
        socket.curve_server = True
        socket.zap_domain = role.encode()
        self._auth.configure_curve_callback(role, credentials_provider=self._auth)
        watch = HandshakeWatch(socket, role, keypair.public, self.throttle)
        watch.start()
        self._watches.append(watch)
        self._sockets.append(socket)

    def stop(self) -> None:
        """Stop the monitor readers and the ZAP thread (idempotent); close the sockets first.

        libzmq (4.3) admits *any* CURVE key once no ZAP handler answers, so a secured socket
        still open here is closed here, with a warning, rather than left open to everyone.
        """
        still_open = [sock for sock in self._sockets if not sock.closed]
        if still_open:
            logger.warning("closing %d CURVE socket(s) left open: without the authenticator libzmq would "
                           "admit any key (close the broker's sockets before BrokerAuth.stop())", len(still_open))
            for sock in still_open:
                sock.close(0)
        self._sockets.clear()
        for watch in self._watches:
            watch.stopping.set()
        for watch in self._watches:
            watch.join()
        self._watches.clear()
        with _RUNNING_LOCK:
            if _RUNNING.get(id(self.context)) is self:
                del _RUNNING[id(self.context)]
        self._auth.stop()

    def __enter__(self) -> "BrokerAuth":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ServerSecurity:
    """The broker's key pair and the folder of public keys it admits (its own key is always admitted).

    The own-key rule lets ``rerankpool up`` give its local workers ``local_client()``
    without any extra key file. ``authorized_dir=None`` admits the own key only.
    """

    keypair: KeyPair
    authorized_dir: Path | None

    def __post_init__(self) -> None:
        require_curve()
        self.keypair.require_secret("the broker")

    @classmethod
    def from_files(cls, key: str | Path, authorized_dir: str | Path | None) -> "ServerSecurity":
        return cls(load_keypair(key), Path(authorized_dir) if authorized_dir is not None else None)

    def authorized_keys(self) -> dict[bytes, str]:
        keys = load_authorized_keys(self.authorized_dir) if self.authorized_dir is not None else {}
        if self.authorized_dir is not None and not keys:
            logger.warning("no *%s files in %s: only peers holding this broker's own key can connect; copy each "
                           "client's and worker's NAME%s file there", PUBLIC_SUFFIX, self.authorized_dir,
                           PUBLIC_SUFFIX)
        keys.setdefault(self.keypair.public, "this broker's own key")
        return keys

    def start(self, ctx: zmq.Context, repeat_warning_s: float = REPEAT_WARNING_S) -> BrokerAuth:
        """Start the ZAP handler on ``ctx`` (the context of the sockets to protect); keys are read now."""
        return BrokerAuth(self, ctx, repeat_warning_s)

    def apply(self, socket: zmq.Socket, role: str = "broker") -> None:
        """Secure ``socket`` (before bind) through the authenticator started on its context.

        Refuses when none runs there: libzmq would otherwise admit *any* CURVE key.
        """
        with _RUNNING_LOCK:
            auth = _RUNNING.get(id(socket.context))
        if auth is None or auth.context is not socket.context or auth.security != self:
            raise SecurityError("no CURVE authenticator runs on this socket's context: call "
                                "ServerSecurity.start(ctx) with the same context first")
        auth.secure(socket, role)

    def local_client(self) -> ClientSecurity:
        """Security for peers on this host that may hold the broker's own key (e.g. `up`'s workers)."""
        return ClientSecurity(self.keypair, self.keypair.public)

