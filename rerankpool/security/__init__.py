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

One module a job, as pyzmq splits ``zmq.auth``:

- ``keys``: KeyPair, SecurityError and the key files (generate, load, check z85);
- ``client``: ClientSecurity, all a client or worker imports (no threads, no ZAP);
- ``server``: ServerSecurity and BrokerAuth, the broker's side;
- ``zap``: the ZAP authenticator thread; ``watch``: the handshake monitor thread;
  ``throttle``: holds back repeated warnings for both;
- ``endpoints``: is an endpoint public, and the plain-text warning;
- ``cli``: the --curve-key/--server-key/--authorized-keys flags and `rerankpool keys`.

Import from those modules. The names below are also reachable here, for older code,
but each is imported only on first use, so ``import rerankpool.security.client`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "keys": ("DEFAULT_KEY_NAMES", "PUBLIC_SUFFIX", "SECRET_SUFFIX", "KeyPair", "SecurityError", "generate_keys",
             "load_authorized_keys", "load_keypair", "load_public_key", "make_keys"),
    "client": ("ClientSecurity",),
    "server": ("REPEAT_WARNING_S", "BrokerAuth", "ServerSecurity"),
    "endpoints": ("is_public_endpoint", "warn_if_public_without_curve"),
    "cli": ("client_flags", "client_security_from_args", "cmd_keys", "keys_parser", "server_flags",
            "server_security_from_args", "usage_text"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
