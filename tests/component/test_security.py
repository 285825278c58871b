"""CURVE on real sockets: who gets through, who is refused, and what the broker logs about it."""

from __future__ import annotations

import argparse
import logging
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

import rerankpool.security
from rerankpool.security.cli import (
    client_flags,
    client_security_from_args,
    keys_parser,
    server_flags,
    server_security_from_args,
)
from rerankpool.security.client import ClientSecurity
from rerankpool.security.endpoints import warn_if_public_without_curve
from rerankpool.security.keys import KeyPair, SecurityError, generate_keys, load_keypair, load_public_key, make_keys
from rerankpool.security.server import ServerSecurity

LOGGER = "rerankpool.security"  # every module of the package logs under this one name, as before the split
NOTHING_MS = 1000  # how long "nothing arrives" is watched
ARRIVES_MS = 5000  # how long a positive case may take


class LogWaiter(logging.Handler):
    """Wakes the test when a matching record is logged (from any thread): no sleeping."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def wait_for(self, *words: str, level: int = logging.WARNING, timeout: float = 5.0) -> logging.LogRecord:
        def match():
            return next((r for r in self.records if r.levelno == level and all(w in r.getMessage() for w in words)),
                        None)

        with self.changed:
            assert self.changed.wait_for(match, timeout), f"no {logging.getLevelName(level)} log with {words}"
            return match()


@pytest.fixture
def logs():
    waiter = LogWaiter()
    log = logging.getLogger(LOGGER)
    old = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(waiter)
    yield waiter
    log.removeHandler(waiter)
    log.setLevel(old)


@pytest.fixture(scope="module")
def keydir(tmp_path_factory) -> Path:
    """broker, client (authorized) and intruder (not authorized) key pairs, made once."""
    d = tmp_path_factory.mktemp("keys")
    make_keys(d, ["broker", "client", "intruder"])
    (d / "authorized").mkdir()
    (d / "authorized" / "client.key").write_bytes((d / "client.key").read_bytes())
    return d


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.term()  # hangs if a test leaks a socket: that is a bug worth seeing


@pytest.fixture
def broker(ctx, keydir):
    """A CURVE ROUTER on a random loopback port, guarded by a running authenticator."""
    security = ServerSecurity.from_files(keydir / "broker.key_secret", keydir / "authorized")
    auth = security.start(ctx)
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    security.apply(router, role="frontend")
    port = router.bind_to_random_port("tcp://127.0.0.1")
    yield router, f"tcp://127.0.0.1:{port}", security
    router.close(0)
    auth.stop()


@pytest.fixture
def dealer(ctx):
    socks = []

    def make(security: ClientSecurity | None) -> zmq.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        if security is not None:
            security.apply(sock)
        socks.append(sock)
        return sock

    yield make
    for sock in socks:
        sock.close(0)


# -- over the wire (server, zap, watch) ------------------------------------------------


def test_authorized_client_round_trip(broker, dealer, keydir):
    router, endpoint, _ = broker
    client = ClientSecurity.from_files(keydir / "client.key_secret", keydir / "broker.key")
    sock = dealer(client)
    sock.connect(endpoint)
    sock.send(b"ping")
    assert router.poll(ARRIVES_MS)
    identity, frame = router.recv_multipart(copy=False)
    assert frame.bytes == b"ping"
    assert frame.get("User-Id") == client.keypair.public_text  # the broker can tell who sent it
    router.send_multipart([identity.bytes, b"pong"])
    assert sock.poll(ARRIVES_MS)
    assert sock.recv() == b"pong"


def test_broker_admits_its_own_key_for_local_workers(broker, dealer):
    router, endpoint, security = broker
    sock = dealer(security.local_client())
    sock.connect(endpoint)
    sock.send(b"ready")
    assert router.poll(ARRIVES_MS)
    assert router.recv_multipart()[1] == b"ready"


def knock(broker, dealer, security: ClientSecurity | None) -> None:
    """A peer with these keys (None: plain) connects and sends; nothing must reach the broker's socket."""
    router, endpoint, _ = broker
    sock = dealer(security)
    sock.connect(endpoint)
    sock.send(b"let me in")
    assert router.poll(NOTHING_MS) == 0


def test_unauthorized_key_is_refused_and_logged(broker, dealer, keydir, logs, caplog):
    intruder = ClientSecurity.from_files(keydir / "intruder.key_secret", keydir / "broker.key")
    knock(broker, dealer, intruder)
    record = logs.wait_for("refused 127.0.0.1 on frontend", intruder.keypair.public_text)
    assert "not authorized" in record.getMessage() and "authorized" in record.getMessage()
    assert any(r.levelno == logging.WARNING and intruder.keypair.public_text in r.getMessage()
               for r in caplog.records)


def test_plain_peer_is_refused_in_the_handshake_and_logged_without_address(broker, dealer, logs):
    """libzmq refuses a NULL peer on mechanism mismatch before ZAP: only the socket monitor sees it."""
    _, endpoint, _ = broker
    knock(broker, dealer, None)
    record = logs.wait_for("refused a peer on frontend", "no CURVE key")
    assert endpoint in record.getMessage()
    assert "does not report its address" in record.getMessage()
    # it reconnects every 100 ms; the repeats are held back, not logged
    assert sum("no CURVE key" in r.getMessage() for r in logs.records if r.levelno == logging.WARNING) == 1


def test_wrong_server_key_is_refused_and_logged(broker, dealer, keydir, logs):
    _, _, security = broker
    knock(broker, dealer, ClientSecurity.from_files(keydir / "client.key_secret", keydir / "intruder.key"))
    record = logs.wait_for("refused a peer on frontend", "--server-key")
    assert security.keypair.public_text in record.getMessage()


def test_stop_closes_sockets_left_open(ctx, keydir, logs):
    """libzmq admits any CURVE key once no ZAP handler answers, so stop() must not leave a secured socket open."""
    security = ServerSecurity.from_files(keydir / "broker.key_secret", keydir / "authorized")
    auth = security.start(ctx)
    router = ctx.socket(zmq.ROUTER)
    security.apply(router, role="backend")
    router.bind_to_random_port("tcp://127.0.0.1")
    auth.stop()
    assert router.closed
    logs.wait_for("closing 1 CURVE socket(s) left open")
    assert not auth.running


def test_apply_refuses_without_a_running_authenticator(ctx, keydir):
    """libzmq admits any CURVE key when no ZAP handler runs, so securing a socket without one is an error."""
    security = ServerSecurity.from_files(keydir / "broker.key_secret", keydir / "authorized")
    router = ctx.socket(zmq.ROUTER)
    try:
        with pytest.raises(SecurityError, match="start"):
            security.apply(router)
        other = zmq.Context()
        try:
            with security.start(other), pytest.raises(SecurityError, match="start"):
                security.apply(router)  # authenticator on another context does not count
        finally:
            other.term()
        with security.start(ctx), pytest.raises(SecurityError, match="already runs"):
            security.start(ctx)
    finally:
        router.close(0)


# -- key files (keys) ------------------------------------------------------------------


def test_generate_keys_files_modes_and_no_overwrite(tmp_path):
    public, secret = generate_keys(tmp_path / "k", "worker")
    assert (public.name, secret.name) == ("worker.key", "worker.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["worker.key", "worker.key_secret"]
    before = secret.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        generate_keys(tmp_path / "k", "worker")
    assert secret.read_bytes() == before
    with pytest.raises(FileExistsError):  # refuses the whole batch, writes none
        make_keys(tmp_path / "k", ["fresh", "worker"])
    assert not (tmp_path / "k" / "fresh.key").exists()
    with pytest.raises(SecurityError, match="plain file name"):
        generate_keys(tmp_path, "../escape")


def test_load_keypair_round_trip_from_either_file(keydir, tmp_path):
    pair = load_keypair(keydir / "client.key_secret")
    assert pair.secret is not None and len(pair.public) == 40
    assert load_keypair(keydir / "client.key") == pair  # finds the secret sibling
    assert load_keypair(keydir / "client") == pair
    public_only = load_keypair(keydir / "authorized" / "client.key")
    assert public_only == KeyPair(pair.public, None)
    assert pair.secret.decode() not in repr(pair)
    with pytest.raises(SecurityError, match="needs a secret key"):
        ClientSecurity(public_only, pair.public)
    assert load_public_key(keydir / "client.key") == pair.public
    assert load_public_key(pair.public_text) == pair.public


def test_corrupt_or_missing_key_files_say_what_to_do(keydir, tmp_path):
    with pytest.raises(SecurityError, match="rerankpool keys"):
        load_keypair(tmp_path / "nope.key_secret")
    bad = tmp_path / "bad.key"
    bad.write_text("curve\n    public-key = \"not a key\"\n")
    with pytest.raises(SecurityError, match=r"bad\.key.*rerankpool keys"):
        load_keypair(bad)
    (tmp_path / "empty.key_secret").write_text("# nothing here\n")
    with pytest.raises(SecurityError, match="empty.key_secret"):
        load_keypair(tmp_path / "empty.key_secret")
    mixed = tmp_path / "mixed.key_secret"  # public key of one pair, secret of another
    a, b = load_keypair(keydir / "client.key_secret"), load_keypair(keydir / "intruder.key_secret")
    mixed.write_text(f'curve\n    public-key = "{a.public_text}"\n    secret-key = "{b.secret.decode()}"\n')
    with pytest.raises(SecurityError, match="does not belong"):
        load_keypair(mixed)
    for text in ("~" * 40, "#" * 40):  # not z85; z85 that overflows 32 bits
        with pytest.raises(SecurityError, match="z85"):
            load_public_key(text)
    with pytest.raises(SecurityError, match="does not exist"):
        ServerSecurity.from_files(keydir / "broker.key_secret", tmp_path / "missing").authorized_keys()
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "x.key").write_text("garbage\n")
    with pytest.raises(SecurityError, match=r"x\.key"):
        ServerSecurity.from_files(keydir / "broker.key_secret", authorized).authorized_keys()


# -- the command line (cli) ------------------------------------------------------------


def test_keys_command_and_flags(tmp_path, capsys, keydir):
    parser = argparse.ArgumentParser()
    keys_parser(parser.add_subparsers())
    args = parser.parse_args(["keys", "--out", str(tmp_path / "k"), "broker", "w1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "--authorized-keys" in out and "w1.key" in out and "--server-key" in out
    assert (tmp_path / "k" / "w1.key_secret").exists()

    server = argparse.ArgumentParser(parents=[server_flags()])
    assert server_security_from_args(server.parse_args([])) is None
    with pytest.raises(SecurityError, match="--authorized-keys"):
        server_security_from_args(server.parse_args(["--curve-key", str(keydir / "broker.key_secret")]))
    client = argparse.ArgumentParser(parents=[client_flags()])
    assert client_security_from_args(client.parse_args([])) is None
    with pytest.raises(SecurityError, match="both"):
        client_security_from_args(client.parse_args(["--server-key", str(keydir / "broker.key")]))
    sec = client_security_from_args(client.parse_args(
        ["--curve-key", str(keydir / "client.key_secret"), "--server-key", str(keydir / "broker.key")]))
    assert sec.server_public == load_keypair(keydir / "broker.key").public


# -- the plain-text warning (endpoints) ------------------------------------------------


@pytest.mark.parametrize("endpoint, public", [
    ("tcp://*:5555", True),
    ("tcp://0.0.0.0:5555", True),
    ("tcp://[::]:5555", True),
    ("tcp://192.168.1.20:5555", True),
    ("tcp://eth0:5555", True),
    ("tcp://broker.example.com:5555", True),
    ("ws://0.0.0.0:8080/pool", True),
    ("tcp://127.0.0.1:5555", False),
    ("tcp://127.0.0.2:*", False),
    ("tcp://[::1]:5555", False),
    ("tcp://localhost:5555", False),
    ("tcp://lo:5555", False),
    ("ipc:///tmp/rerankpool.sock", False),
    ("inproc://broker", False),
])
def test_warn_if_public_without_curve(endpoint, public, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert warn_if_public_without_curve(endpoint, secured=False) is public
    assert any("without CURVE" in r.getMessage() and "rerankpool keys" in r.getMessage()
               for r in caplog.records) is public
    caplog.clear()
    assert warn_if_public_without_curve(endpoint, secured=True) is False
    assert not caplog.records


# -- the package: a light client path, and the old names still reachable ---------------


def test_importing_the_client_leaves_the_broker_machinery_unloaded():
    """A client or worker process must not pay for the ZAP thread, the monitor thread or argparse flags."""
    code = ("import sys, rerankpool; print(' '.join(sorted(m for m in sys.modules "
            "if m.startswith(('zmq.auth', 'rerankpool.security')))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                 .stdout.split())
    assert "rerankpool.security.client" in loaded
    assert not loaded & {"zmq.auth.thread", "rerankpool.security.server", "rerankpool.security.zap",
                         "rerankpool.security.watch", "rerankpool.security.cli"}


def test_every_public_name_is_still_reachable_from_the_package():
    assert rerankpool.security.__all__ == [
        "BrokerAuth", "ClientSecurity", "DEFAULT_KEY_NAMES", "KeyPair", "PUBLIC_SUFFIX", "REPEAT_WARNING_S",
        "SECRET_SUFFIX", "SecurityError", "ServerSecurity", "client_flags", "client_security_from_args", "cmd_keys",
        "generate_keys", "is_public_endpoint", "keys_parser", "load_authorized_keys", "load_keypair",
        "load_public_key", "make_keys", "server_flags", "server_security_from_args", "usage_text",
        "warn_if_public_without_curve",
    ]
    for name in rerankpool.security.__all__:
        assert getattr(rerankpool.security, name) is not None
    assert rerankpool.security.ServerSecurity is ServerSecurity
    assert "ClientSecurity" in dir(rerankpool.security)
    with pytest.raises(AttributeError, match="no_such_name"):
        rerankpool.security.no_such_name  # noqa: B018
