"""What a client or worker needs for CURVE: its own key pair and the broker's public key.

Light on purpose: no ZAP authenticator and no threads, so ``import rerankpool`` stays
cheap. Call ``security.apply(sock)`` before ``sock.connect(...)`` on each new socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq

from rerankpool.security.keys import (
    PUBLIC_SUFFIX,
    KeyPair,
    SecurityError,
    load_keypair,
    load_public_key,
    require_curve,
    valid_z85_key,
)


@dataclass(frozen=True)
class ClientSecurity:
    """A client's or worker's own key pair and the broker's public key it expects."""

    keypair: KeyPair
    server_public: bytes

    def __post_init__(self) -> None:
        require_curve()
        self.keypair.require_secret("a client or worker")
        if not valid_z85_key(self.server_public):
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
