"""CURVE on the command line: the flags, turning them into security settings, and `rerankpool keys`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerankpool.security.client import ClientSecurity
from rerankpool.security.keys import DEFAULT_KEY_NAMES, PUBLIC_SUFFIX, SECRET_SUFFIX, SecurityError, make_keys

if TYPE_CHECKING:
    from rerankpool.security.server import ServerSecurity


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
    from rerankpool.security.server import ServerSecurity  # here, so client commands never load the ZAP thread

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
