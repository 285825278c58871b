"""CURVE key pairs and their files: make them, read them, check them.

Keys are pyzmq/czmq certificate files, z85 text::

    rerankpool keys --out keys broker worker client
    keys/broker.key          public:  give to every client and worker (--server-key)
    keys/broker.key_secret   secret:  the broker's --curve-key, never leaves its host
    keys/worker.key          public:  copy into the broker's --authorized-keys directory
    keys/worker.key_secret   secret:  the worker's --curve-key

No sockets and no threads here: the client side and the broker side both build on this.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from rerankpool.errors import RerankPoolError

logger = logging.getLogger("rerankpool.security")  # one logger for all of CURVE, the name the logs have always shown

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
DEFAULT_KEY_NAMES = ("broker", "worker", "client")
_MAKE_HINT = "make one with `rerankpool keys --out DIR NAME`"


class SecurityError(RerankPoolError, ValueError):
    """A key file or CURVE setting is missing, corrupt or inconsistent; the message says what to fix."""


def require_curve() -> None:
    if not zmq.has("curve"):
        raise SecurityError(
            f"this libzmq ({zmq.zmq_version()}) was built without CURVE: "
            "install a pyzmq wheel from PyPI (it bundles libsodium) to use --curve-key"
        )


def valid_z85_key(key: bytes) -> bool:
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
        if not valid_z85_key(self.public):
            raise SecurityError("a CURVE public key is 40 z85 characters; this one is not")
        if self.secret is not None:
            if not valid_z85_key(self.secret):
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
    require_curve()
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
        if valid_z85_key(text):
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
