"""This computer's private key: what lets an output folder's manifest recognise its inputs without
naming or fingerprinting them for everyone else.

An output folder is what a person shares (a zip, a synced folder), manifest included. A plain
sha256 of an input there would let anyone who holds or later meets the original (a backup, the
same photo sent unprotected elsewhere, a database of known photos' hashes) link the protected copy
to it. The manifest records instead an HMAC-SHA256 of the input's bytes under a random key that
never leaves this computer: the same run again here recognises its inputs; nobody else can test a
candidate original against the record.

The key is 32 random bytes in ``private-key`` under ``$PPJAX_HOME`` when that is set (one store,
one key: the page and the command line agree), else under the user data folder (not the cache: a
cleared cache must not make every finished photo look changed). It is made once, readable by its
owner alone, and written by a link into place, so two processes starting together agree on one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import platformdirs

from ppjax.store.install import ENV_HOME

__all__ = ["KEY_FILE", "key_path", "local_key", "keyed_digest"]

KEY_FILE = "private-key"
_KEY_BYTES = 32


def _default_folder() -> Path:
    return Path(platformdirs.user_data_dir("ppjax"))


def key_path() -> Path:
    """Where this computer's key is (or will be): ``$PPJAX_HOME/private-key``, else the user data folder's."""
    env = os.environ.get(ENV_HOME)
    return (Path(env) if env else _default_folder()) / KEY_FILE


def local_key(path: str | os.PathLike | None = None) -> bytes:
    """The key at ``path`` (default :func:`key_path`), made now if there is none yet.

    Raises ``ValueError`` for a key file that is not one (wrong length, not hex): the manifest
    would otherwise stop recognising every finished output without saying why; and for a key that
    cannot be made or read (a read-only store), saying where.
    """
    path = Path(path) if path is not None else key_path()
    try:
        return _read_or_make(path)
    except OSError as e:
        raise ValueError(f"cannot make or read ppjax's private key {path} ({e.strerror or e}): set PPJAX_HOME to a folder you can write") from None


def _read_or_make(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(_KEY_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(staged, path)  # fails if another process made one first: theirs is the key
            except FileExistsError:
                pass
        finally:
            staged.unlink(missing_ok=True)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise ValueError(f"{path} is not a ppjax private key ({_KEY_BYTES} bytes as hex); move it away and ppjax makes a new one")
    return key


def keyed_digest(sha256_hex: str, key: bytes) -> str:
    """HMAC-SHA256 under ``key`` of a file's sha256 (given as hex), as hex: the file's bytes known
    by their digest, which the caller took of the bytes it actually used."""
    return hmac.new(key, bytes.fromhex(sha256_hex), hashlib.sha256).hexdigest()
