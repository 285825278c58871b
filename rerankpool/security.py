"""Optional CURVE encryption and authentication for the broker's two ROUTER sockets.

Without it, anyone who can reach the broker's ports can submit work and join as a
worker. With it, traffic is encrypted and the broker admits only peers whose public
key sits in an authorized-keys directory. Keys are pyzmq/czmq certificate files::

    rerankpool keys --out keys broker worker client
    keys/broker.key          public:  give to every client and worker (--server-key)
    keys/broker.key_secret   secret:  the broker's --curve-key, never leaves its host
    keys/worker.key          public:  copy into the broker's --authorized-keys directory
    keys/worker.key_secret   secret:  the worker's --curve-key

Wiring, broker side (the authenticator must run on the *same* context as the sockets,
and each socket must be secured *before* bind)::

    auth = server.start(ctx)                 # ZAP handler thread on ctx
    sock = ctx.socket(zmq.ROUTER); server.apply(sock, role="frontend"); sock.bind(...)
    ...; sock.close(); auth.stop()           # sockets first, then auth, then ctx.term()

libzmq admits *any* CURVE key when no ZAP handler runs on the context, which is why
``apply`` refuses without ``start`` and ``stop`` closes secured sockets left open.

Client and worker side: ``client.apply(sock)`` before ``sock.connect(...)``.

What the broker logs when it refuses a peer (at WARNING, repeats of the same cause
held back for ``repeat_warning_s``):

- wrong client key: the ZAP handler sees it, so the line names the peer's IP address
  (``localhost:UID:GID:PID`` over ipc) and the key's z85 text;
- no key at all, or the wrong *server* key: libzmq refuses these in the handshake,
  before ZAP, and reports them only through a socket monitor, which carries the bound
  endpoint and the reason but not the peer's address; the line says so.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from rerankpool.errors import RerankPoolError

logger = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
REPEAT_WARNING_S = 60.0
_MAKE_HINT = "make one with `rerankpool keys --out DIR NAME`"


class SecurityError(RerankPoolError, ValueError):
    """A key file or CURVE setting is missing, corrupt or inconsistent; the message says what to fix."""


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise SecurityError(
            f"this libzmq ({zmq.zmq_version()}) was built without CURVE: "
            "install a pyzmq wheel from PyPI (it bundles libsodium) to use --curve-key"
        )


def _valid_z85_key(key: bytes) -> bool:
    """40 z85 characters that decode to 32 bytes and back (rejects out-of-range groups)."""
    if len(key) != 40 or not set(key) <= set(z85.Z85CHARS):
        return False
    try:
        return z85.encode(z85.decode(key)) == key
    except (ValueError, KeyError, OverflowError, struct.error):
        return False


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as z85 text (40 bytes each); ``secret`` is None when only the public file was read."""

    public: bytes
    secret: bytes | None = field(default=None, repr=False)  # never print a secret key

    def __post_init__(self) -> None:
        if not _valid_z85_key(self.public):
            raise SecurityError("a CURVE public key is 40 z85 characters; this one is not")
        if self.secret is not None:
            if not _valid_z85_key(self.secret):
                raise SecurityError("a CURVE secret key is 40 z85 characters; this one is not")
            if zmq.curve_public(self.secret) != self.public:
                raise SecurityError("the secret key does not belong to the public key next to it")

    @property
    def public_text(self) -> str:
        return self.public.decode("ascii")

    def require_secret(self, what: str) -> bytes:
        if self.secret is None:
            raise SecurityError(f"{what} needs a secret key: pass its NAME{SECRET_SUFFIX} file, "
                                f"not NAME{PUBLIC_SUFFIX}")
        return self.secret


# -- key files ------------------------------------------------------------------------


def generate_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public, 0644) and NAME.key_secret (secret, 0600) into ``directory``.

    Never overwrites: replacing a key silently would lock out every peer that trusts it.
    The files are made in a private temporary folder first, so the secret is never
    readable by others, not even for a moment.
    """
    _require_curve()
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise SecurityError(f"key name {name!r} must be a plain file name such as 'worker'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}{PUBLIC_SUFFIX}", directory / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise FileExistsError(f"{path} already exists: keep it, or delete it first to make a new key (peers "
                                  "that trust the old key will then be refused)")
    tmp = Path(tempfile.mkdtemp(prefix=".keys-", dir=directory))  # mode 0700
    try:
        tmp_public, tmp_secret = (Path(p) for p in zmq.auth.create_certificates(tmp, name))
        tmp_secret.chmod(0o600)
        tmp_public.chmod(0o644)
        os.replace(tmp_secret, secret)
        os.replace(tmp_public, public)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.debug("wrote %s and %s", public, secret)
    return public, secret


def _read_certificate(path: Path) -> KeyPair:
    if not path.is_file():
        raise SecurityError(f"no key file at {path}: {_MAKE_HINT}")
    try:
        public, secret = zmq.auth.load_certificate(path)
        return KeyPair(public, secret)
    except (ValueError, OSError) as exc:  # SecurityError is a ValueError too
        raise SecurityError(f"{path} is not a usable CURVE key file made by `rerankpool keys` ({exc}); "
                            f"{_MAKE_HINT}") from None


def load_keypair(path: str | Path) -> KeyPair:
    """Read NAME.key_secret, or NAME.key (then its NAME.key_secret sibling if there is one), or NAME.

    Returns the public key alone (``secret=None``) when only a public file exists.
    """
    path = Path(path)
    if path.name.endswith(SECRET_SUFFIX):
        return _read_certificate(path)
    if path.name.endswith(PUBLIC_SUFFIX):
        sibling = path.with_name(path.name + "_secret")
        return _read_certificate(sibling if sibling.is_file() else path)
    for suffix in (SECRET_SUFFIX, PUBLIC_SUFFIX):
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return _read_certificate(candidate)
    return _read_certificate(path)


def load_public_key(path_or_z85: str | Path) -> bytes:
    """A peer's public key from its key file, or from its 40-character z85 text (e.g. on the command line)."""
    if isinstance(path_or_z85, str) and not Path(path_or_z85).exists():
        text = path_or_z85.strip().encode("ascii", "replace")
        if _valid_z85_key(text):
            return text
        if len(text) == 40:
            raise SecurityError(f"{path_or_z85!r} is neither a key file nor a valid z85 public key")
    return load_keypair(path_or_z85).public


def load_authorized_keys(directory: str | Path) -> dict[bytes, str]:
    """Every public key in ``directory``/*.key, mapped to its file's name for the logs.

    Stricter than pyzmq's ``configure_curve`` (which logs a failure and admits nobody):
    a missing folder or a corrupt file stops the broker with a message naming it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SecurityError(f"authorized-keys directory {directory} does not exist: create it and copy each "
                            f"client's and worker's NAME{PUBLIC_SUFFIX} file into it")
    keys = {_read_certificate(p).public: p.stem for p in sorted(directory.glob(f"*{PUBLIC_SUFFIX}"))}
    for stray in sorted(directory.glob(f"*{SECRET_SUFFIX}")):
        logger.warning("%s is a secret key: only public NAME%s files belong in %s; move it out",
                       stray, PUBLIC_SUFFIX, directory)
    return keys


# -- broker side ----------------------------------------------------------------------


class _Throttle:
    """Says whether to log a warning now, so a peer retrying every 100 ms can't flood the log."""

    def __init__(self, interval_s: float, max_keys: int = 1024) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[tuple, list[float | int]] = {}  # key -> [last logged, suppressed since]
        self._lock = threading.Lock()

    def __call__(self, key: tuple) -> int | None:
        """None: stay quiet; else the number of repeats held back since the last line."""
        now = time.monotonic()
        with self._lock:
            entry = self._last.get(key)
            if entry is not None and now - entry[0] < self.interval_s:
                entry[1] += 1
                return None
            if len(self._last) >= self.max_keys:
                self._last.clear()
            self._last[key] = [now, 0]
            return int(entry[1]) if entry else 0


def _again(held: int) -> str:
    return f" ({held} more like it held back)" if held else ""


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, admitting the keys we loaded and saying who was refused at WARNING.

    pyzmq logs denials only at DEBUG, and its curve callback gets the key but not the
    peer, so ``handle_zap_message`` (public API) notes the peer's address first; the
    thread handles one ZAP request at a time, so the note is never stale.
    """

    def __init__(self, ctx: zmq.Context, keys: dict[bytes, str], where: str, throttle: _Throttle) -> None:
        super().__init__(ctx, log=logging.getLogger(f"{__name__}.zap"))  # pyzmq's own chatter, DEBUG
        self.keys = keys
        self.where = where
        self.throttle = throttle
        self._peer = "?"

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        """The credentials provider pyzmq calls with the client's z85 public key."""
        name = self.keys.get(key)
        role = f" on {domain}" if domain not in ("", "*") else ""
        if name is not None:
            logger.debug("admitted %s%s with key %r (%s)", self._peer, role, name, key.decode())
            return True
        held = self.throttle(("key", self._peer, key))
        if held is not None:
            logger.warning("refused %s%s: its CURVE key %s is not authorized; to admit it, copy its NAME%s file "
                           "into %s and restart the broker%s",
                           self._peer, role, key.decode(), PUBLIC_SUFFIX, self.where, _again(held))
        return False


_HANDSHAKE_HINTS = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        "it offered no CURVE key (a plain connection); give it --curve-key and --server-key",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        "the CURVE handshake did not decrypt: its --server-key is most likely not this broker's public key {pub}",
}


class _HandshakeWatch(threading.Thread):
    """Reads one socket's monitor and logs handshakes libzmq refused before ZAP ever saw them."""

    EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_MONITOR_STOPPED

    def __init__(self, socket: zmq.Socket, label: str, server_public: bytes, throttle: _Throttle) -> None:
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
                           _again(held))


_RUNNING: dict[int, "BrokerAuth"] = {}  # id(context) -> its authenticator; it holds the context alive
_RUNNING_LOCK = threading.Lock()


class BrokerAuth:
    """A running authenticator on one context: secures sockets, and must be stopped before ``ctx.term()``."""

    def __init__(self, security: "ServerSecurity", ctx: zmq.Context, repeat_warning_s: float) -> None:
        keys = security.authorized_keys()
        self.security = security
        self.context = ctx
        self.throttle = _Throttle(repeat_warning_s)
        self._watches: list[_HandshakeWatch] = []
        self._sockets: list[zmq.Socket] = []
        where = str(security.authorized_dir) if security.authorized_dir else "an --authorized-keys directory"
        self._auth = _Authenticator(ctx, keys, where, self.throttle)
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
        watch = _HandshakeWatch(socket, role, keypair.public, self.throttle)
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
        _require_curve()
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


# -- client and worker side -----------------------------------------------------------


@dataclass(frozen=True)
class ClientSecurity:
    """A client's or worker's own key pair and the broker's public key it expects."""

    keypair: KeyPair
    server_public: bytes

    def __post_init__(self) -> None:
        _require_curve()
        self.keypair.require_secret("a client or worker")
        if not _valid_z85_key(self.server_public):
            raise SecurityError("the server key is not a 40-character z85 public key: pass the broker's "
                                f"NAME{PUBLIC_SUFFIX} file")

    @classmethod
    def from_files(cls, key: str | Path, server_key: str | Path) -> "ClientSecurity":
        return cls(load_keypair(key), load_public_key(server_key))

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE client of the broker; call before ``connect`` (each new socket)."""
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.keypair.public
        socket.curve_secretkey = self.keypair.require_secret("a client or worker")


# -- plain-text warning ---------------------------------------------------------------

_LOCAL_TRANSPORTS = ("ipc://", "inproc://")
_LOCAL_HOSTS = {"localhost", "lo", "lo0"}  # lo/lo0: zmq binds an interface by name too


def _host_of(endpoint: str) -> str | None:
    """The host part of tcp://HOST:PORT or ws://HOST:PORT/PATH; None for other transports."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ws", "wss"):
        return None
    rest = rest.split("/", 1)[0].rsplit(";", 1)[-1]  # drop a ws path and a connect-side source address
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_public_endpoint(endpoint: str) -> bool:
    """True unless ``endpoint`` is ipc, inproc or a loopback tcp address (127.0.0.0/8, ::1, localhost, lo)."""
    if endpoint.startswith(_LOCAL_TRANSPORTS):
        return False
    host = _host_of(endpoint)
    if host is None:  # udp, pgm, vmci...: assume others can reach it
        return True
    if host.lower() in _LOCAL_HOSTS:
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', a host name or an interface name: it may be reachable from elsewhere
        return True


def warn_if_public_without_curve(endpoint: str, secured: bool, log: logging.Logger = logger) -> bool:
    """Log a WARNING (and return True) when binding a reachable interface in plain text."""
    if secured or not is_public_endpoint(endpoint):
        return False
    log.warning("binding a public interface without CURVE (%s): anyone who can reach it can use the pool; see "
                "`rerankpool keys`", endpoint)
    return True


# -- command line ---------------------------------------------------------------------

DEFAULT_KEY_NAMES = ("broker", "worker", "client")


def make_keys(out_dir: str | Path, names: list[str] | tuple[str, ...] = DEFAULT_KEY_NAMES) -> list[Path]:
    """Key pairs for every name in ``out_dir``; refuses before writing any if one file already exists."""
    out_dir = Path(out_dir)
    if len(set(names)) != len(names):
        raise SecurityError(f"key names repeat: {' '.join(names)}")
    for name in names:
        for suffix in (PUBLIC_SUFFIX, SECRET_SUFFIX):
            if (out_dir / f"{name}{suffix}").exists():
                raise FileExistsError(f"{out_dir / (name + suffix)} already exists: pick another name, or delete "
                                      "it first (peers that trust the old key will then be refused)")
    paths: list[Path] = []
    for name in names:
        paths.extend(generate_keys(out_dir, name))
    return paths


def usage_text(out_dir: str | Path, names: list[str] | tuple[str, ...] = DEFAULT_KEY_NAMES,
               server: str = "broker") -> str:
    """How to use freshly made keys: which file goes where."""
    d = Path(out_dir)
    server = server if server in names else names[0]
    peers = [n for n in names if n != server]
    copies = " ".join(str(d / f"{n}{PUBLIC_SUFFIX}") for n in peers) or f"{d}/PEER{PUBLIC_SUFFIX}"
    peer = peers[0] if peers else "PEER"
    return "\n".join([
        f"made CURVE key pairs in {d}: {', '.join(names)}",
        f"  *{SECRET_SUFFIX} files are secret (mode 0600): each stays with its owner",
        f"  *{PUBLIC_SUFFIX} files are public",
        "broker: admit peers by copying their public keys into one folder",
        f"  mkdir -p {d / 'authorized'} && cp {copies} {d / 'authorized'}/",
        f"  rerankpool broker --curve-key {d / (server + SECRET_SUFFIX)} --authorized-keys {d / 'authorized'}",
        "clients and workers: their own secret key, and the broker's public key",
        f"  rerankpool worker --curve-key {d / (peer + SECRET_SUFFIX)} --server-key {d / (server + PUBLIC_SUFFIX)}",
        f"  rerankpool rerank --curve-key {d / (peer + SECRET_SUFFIX)} --server-key {d / (server + PUBLIC_SUFFIX)} "
        "QUERY DOC...",
        "new peer later: `rerankpool keys --out DIR NAME`, copy NAME.key into the folder, restart the broker",
    ])


def server_flags() -> argparse.ArgumentParser:
    """--curve-key and --authorized-keys for `broker` and `up` (a parent parser, like broker_flags)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("CURVE security (see `rerankpool keys`)")
    g.add_argument("--curve-key", default=None, metavar="NAME.key_secret",
                   help="the broker's secret key file; turns on encryption and authentication")
    g.add_argument("--authorized-keys", default=None, metavar="DIR",
                   help="folder of public NAME.key files of the clients and workers to admit")
    return p


def client_flags() -> argparse.ArgumentParser:
    """--curve-key and --server-key for `worker`, `rerank`, `stats`."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("CURVE security (see `rerankpool keys`)")
    g.add_argument("--curve-key", default=None, metavar="NAME.key_secret", help="this peer's secret key file")
    g.add_argument("--server-key", default=None, metavar="FILE|Z85",
                   help="the broker's public key: its broker.key file or the 40-character text")
    return p


def server_security_from_args(args: argparse.Namespace) -> ServerSecurity | None:
    if args.curve_key is None:
        if args.authorized_keys is not None:
            raise SecurityError("--authorized-keys needs --curve-key (the broker's NAME.key_secret file)")
        return None
    if args.authorized_keys is None:
        raise SecurityError("--curve-key needs --authorized-keys DIR (the public keys of the peers to admit)")
    return ServerSecurity.from_files(args.curve_key, args.authorized_keys)


def client_security_from_args(args: argparse.Namespace) -> ClientSecurity | None:
    if args.curve_key is None and args.server_key is None:
        return None
    if args.curve_key is None or args.server_key is None:
        raise SecurityError("CURVE needs both --curve-key (this peer's NAME.key_secret) and --server-key "
                            "(the broker's public key)")
    return ClientSecurity.from_files(args.curve_key, args.server_key)


def cmd_keys(args: argparse.Namespace) -> int:
    names = list(args.names or DEFAULT_KEY_NAMES)
    for path in make_keys(Path(args.out), names):
        print(path)
    print(usage_text(Path(args.out), names))
    return 0


def keys_parser(sub: Any) -> None:
    """Register `rerankpool keys` on the CLI's subparsers."""
    p = sub.add_parser("keys", help="make CURVE key pairs for the broker, workers and clients")
    p.add_argument("names", nargs="*", help=f"one key pair per name (default: {' '.join(DEFAULT_KEY_NAMES)})")
    p.add_argument("--out", required=True, help="folder to write NAME.key and NAME.key_secret into")
    p.set_defaults(func=cmd_keys)
