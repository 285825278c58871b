"""Is an endpoint reachable from other hosts? Warns when the broker binds one in plain text."""

from __future__ import annotations

import ipaddress
import logging

logger = logging.getLogger("rerankpool.security")  # one logger for all of CURVE, the name the logs have always shown

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
