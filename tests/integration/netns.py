"""Several "hosts" on one machine: Linux network namespaces joined by a bridge, for multi-host tests.

The broker host holds a bridge; each worker host is joined to it by a veth pair::

    broker ns (br0 10.213.7.1/24) --vw1/eth0-- worker ns 1 (eth0 10.213.7.11/24)
                                  --vw2/eth0-- worker ns 2 (eth0 10.213.7.12/24)

Every link and address lives inside the namespaces made here; nothing is added to the root
namespace, so the subnet cannot clash with the machine's network, nor with a parallel run
(whose namespaces, named after its pid, hold their own copy of it). ``close()`` kills every
process left in the namespaces and deletes them, whatever state the test left them in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.213.7"  # a /24: .1 the broker host, .11, .12, ... the worker hosts
ROOT = Path(__file__).resolve().parents[2]  # the repository: where `python -m tests...` works


class NamespacesUnavailable(RuntimeError):
    """This machine (or this user) cannot make network namespaces, veths or bridges."""


def ip(*args: str) -> str:
    """Run ``ip ARGS``; raise with its stderr if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["ip", *args], done.stdout, done.stderr)
    return done.stdout


@dataclass(frozen=True)
class Host:
    ns: str  # the network namespace
    address: str  # its IPv4 address on the lab's /24
    dev: str  # its leg, as named inside its namespace


class Lab:
    def __init__(self, workers: int, log_dir: Path) -> None:
        tag = f"rp{os.getpid()}"
        self.broker = Host(f"{tag}b", f"{SUBNET}.1", "br0")
        self.workers = [Host(f"{tag}w{i}", f"{SUBNET}.{10 + i}", "eth0") for i in range(1, workers + 1)]
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._made: list[str] = []  # namespaces to delete on close

    @property
    def hosts(self) -> list[Host]:
        return [self.broker, *self.workers]

    # -- topology -----------------------------------------------------------------------

    def create(self) -> "Lab":
        """Make the namespaces and links. NamespacesUnavailable if the kernel or user can't."""
        if shutil.which("ip") is None:
            raise NamespacesUnavailable("the `ip` command (iproute2) is not installed")
        if os.geteuid() != 0:
            raise NamespacesUnavailable("creating network namespaces needs root")
        for host in self.hosts:
            self._capable("ip netns add", "netns", "add", host.ns)
            self._made.append(host.ns)
            ip("-n", host.ns, "link", "set", "lo", "up")
        b = self.broker.ns
        self._capable("a bridge", "-n", b, "link", "add", "br0", "type", "bridge")
        ip("-n", b, "addr", "add", f"{self.broker.address}/24", "dev", "br0")
        ip("-n", b, "link", "set", "br0", "up")
        for i, w in enumerate(self.workers, 1):
            self._capable("a veth pair", "-n", b, "link", "add", f"vw{i}", "type", "veth",
                          "peer", "name", w.dev, "netns", w.ns)
            ip("-n", b, "link", "set", f"vw{i}", "master", "br0", "up")
            ip("-n", w.ns, "addr", "add", f"{w.address}/24", "dev", w.dev)
            ip("-n", w.ns, "link", "set", w.dev, "up")
        return self

    @staticmethod
    def _capable(what: str, *args: str) -> None:
        try:
            ip(*args)
        except subprocess.CalledProcessError as exc:
            raise NamespacesUnavailable(f"{what} failed: `{' '.join(exc.cmd)}`: {exc.stderr.strip()}") from None

    def cut(self, host: Host) -> None:
        """Pull the host's cable: its leg goes down, so nothing passes either way."""
        ip("-n", host.ns, "link", "set", host.dev, "down")

    def pids(self, host: Host) -> set[int]:
        """Every process living in the host's namespace."""
        return {int(p) for p in ip("netns", "pids", host.ns).split()}

    # -- processes ----------------------------------------------------------------------

    def command(self, host: Host, *argv: str) -> list[str]:
        """``argv`` run with this Python inside the host's namespace."""
        return ["ip", "netns", "exec", host.ns, sys.executable, *argv]

    def spawn(self, name: str, host: Host, *argv: str) -> subprocess.Popen:
        """Start ``python ARGV`` on ``host``, its output to ``LOG_DIR/NAME.log``; stopped by close()."""
        with open(self.log_dir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(self.command(host, *argv), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=ROOT)
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_tail(name)}" for name in self.procs)

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the processes (SIGTERM, then SIGKILL), kill anything left in the namespaces, delete them."""
        procs = [p for _, p in sorted(self.procs.items(), key=lambda kv: kv[0] == "broker")]  # broker last
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in self._made:
            self._kill_all_in(ns)
            try:
                ip("netns", "del", ns)
            except subprocess.CalledProcessError as exc:
                print(f"could not delete namespace {ns}: {exc.stderr.strip()}", file=sys.stderr)
        self._made.clear()

    def _kill_all_in(self, ns: str, timeout_s: float = 10) -> None:
        """SIGKILL whatever still runs in ``ns`` (orphaned worker children, say) and wait until it is gone."""
        try:
            left = {int(p) for p in ip("netns", "pids", ns).split()}
        except subprocess.CalledProcessError:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            left = {pid for pid in left if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)}
            if left:
                time.sleep(0.05)  # polling /proc, not waiting for luck


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
