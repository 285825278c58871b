"""The broker's ZAP handler: pyzmq's authenticator thread, admitting the keys we loaded.

Only the broker imports this (it brings in ``zmq.auth.thread``); clients and workers never do.
"""

from __future__ import annotations

import logging

import zmq
from zmq.auth.thread import ThreadAuthenticator

from rerankpool.security.keys import PUBLIC_SUFFIX
from rerankpool.security.throttle import Throttle, held_back

logger = logging.getLogger("rerankpool.security")  # one logger for all of CURVE, the name the logs have always shown


class ZapAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, admitting the keys we loaded and saying who was refused at WARNING.

    pyzmq logs denials only at DEBUG, and its curve callback gets the key but not the
    peer, so ``handle_zap_message`` (public API) notes the peer's address first; the
    thread handles one ZAP request at a time, so the note is never stale.
    """

    def __init__(self, ctx: zmq.Context, keys: dict[bytes, str], where: str, throttle: Throttle) -> None:
        super().__init__(ctx, log=logging.getLogger(f"{logger.name}.zap"))  # pyzmq's own chatter, DEBUG
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
                           self._peer, role, key.decode(), PUBLIC_SUFFIX, self.where, held_back(held))
        return False
