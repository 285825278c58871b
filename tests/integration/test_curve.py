"""CURVE through the real CLI: only keyed clients and workers are admitted, and the broker says so."""

from __future__ import annotations

import time

import pytest

from rerankpool import Client, NoReply
from rerankpool.launch import LocalPool
from rerankpool.security.client import ClientSecurity
from rerankpool.security.keys import load_keypair, make_keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    make_keys(root, ["broker", "worker", "client", "stranger"])
    authorized = root / "authorized"
    authorized.mkdir()
    for name in ("worker", "client"):
        (authorized / f"{name}.key").write_bytes((root / f"{name}.key").read_bytes())
    return root, authorized


@pytest.fixture(scope="module")
def secure_pool(keys):
    root, authorized = keys
    broker = ["--curve-key", str(root / "broker.key_secret"), "--authorized-keys", str(authorized)]
    worker = ["--curve-key", str(root / "worker.key_secret"), "--server-key", str(root / "broker.key")]
    with LocalPool(model="tiny-bert", workers=1, broker_args=broker, worker_args=worker,
                   security=keyed(keys, "client")) as pool:
        yield pool


def keyed(keys, name: str) -> ClientSecurity:
    root, _ = keys
    return ClientSecurity.from_files(root / f"{name}.key_secret", root / "broker.key")


def wait_for_log(pool: LocalPool, text: str, timeout_s: float = 60.0) -> str:
    """Block until the broker's log contains ``text`` (the event we wait for is the log line itself)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = pool.log_tail("broker", lines=1000)
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the broker log:\n{pool.log_tail('broker')}")


def test_authorized_client_is_served(secure_pool, keys, tiny_direct):
    with Client(secure_pool.frontend, timeout=10, security=keyed(keys, "client")) as client:
        assert client.score([("q", "d")]) == pytest.approx([tiny_direct("q", "d")], abs=1e-4)


def test_client_with_an_unknown_key_gets_nothing_and_is_logged(secure_pool, keys):
    with Client(secure_pool.frontend, timeout=0.5, retries=0, security=keyed(keys, "stranger")) as client:
        with pytest.raises(NoReply):
            client.score([("q", "d")])
    stranger = load_keypair(keys[0] / "stranger.key").public_text
    assert "WARNING" in wait_for_log(secure_pool, stranger)


def test_client_without_a_key_gets_nothing_and_is_logged(secure_pool):
    with Client(secure_pool.frontend, timeout=0.5, retries=0) as client:
        with pytest.raises(NoReply):
            client.score([("q", "d")])
    wait_for_log(secure_pool, "frontend")


def test_worker_with_a_wrong_key_never_joins(secure_pool, keys):
    root, _ = keys
    proc = secure_pool._spawn(
        "intruder",
        ["worker", "--connect", secure_pool.backend, "--model", "tiny-bert", "--curve-key",
         str(root / "stranger.key_secret"), "--server-key", str(root / "broker.key")],
    )
    try:
        stranger = load_keypair(root / "stranger.key").public_text
        log = wait_for_log(secure_pool, "backend")
        assert stranger in log
        with Client(secure_pool.frontend, timeout=10, security=keyed(keys, "client")) as client:
            assert client.ping()["workers"] == 1
    finally:
        proc.kill()
        proc.wait()
