"""The gateway's listening socket, as ``rerankpool http`` binds it."""

from __future__ import annotations

import socket

import pytest

from rerankpool.http.config import GatewayConfig
from rerankpool.http.serve import REUSE_PORT, bind


def test_the_listening_socket_turns_nagle_off_for_its_connections():
    sock = bind(GatewayConfig(listen="127.0.0.1:0"))
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with pytest.raises(OSError, match="pick another --listen"):
            bind(GatewayConfig(listen=f"127.0.0.1:{sock.getsockname()[1]}"))
    finally:
        sock.close()


@pytest.mark.skipif(not REUSE_PORT, reason="SO_REUSEPORT spreads connections over processes on Linux only")
def test_several_processes_can_each_listen_on_the_port_the_parent_holds():
    holder = bind(GatewayConfig(listen="127.0.0.1:0"), reuse_port=True, listen=False)
    port = holder.getsockname()[1]
    first = bind(GatewayConfig(listen=f"127.0.0.1:{port}"), reuse_port=True)
    second = bind(GatewayConfig(listen=f"127.0.0.1:{port}"), reuse_port=True)
    try:
        assert first.getsockname()[1] == second.getsockname()[1] == port
    finally:
        for sock in (holder, first, second):
            sock.close()
