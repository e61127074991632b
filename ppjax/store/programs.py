"""Programs traced once per machine, not once per process.

JAX's persistent compilation cache spares XLA's compile in a new process, but not what comes
before it: tracing the Python program and lowering it, which for the protection program is most of
its first-call cost that remains (seconds per canvas, every run). :class:`ProgramCache` keeps each
traced program as a serialized ``jax.export`` artifact in the store, under a name derived from
everything that shapes it (the caller's description of its models and objectives, the protector's
settings, the argument shapes, JAX's version and a digest of ppjax's own source); a later process
loads it in milliseconds and hands it to XLA, whose persistent cache then has the compiled code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
from jax import export

import ppjax

__all__ = ["ProgramCache", "source_digest", "CachedProgram"]


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 over ppjax's own Python sources: a program traced from other code is another program."""
    root = Path(ppjax.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ProgramCache:
    """Where exported programs live (``folder``) and what the program's callers put into it that no
    argument shape shows (``identity``: e.g. the model names, objective and fusion)."""

    folder: Path
    identity: str


_registered = False


def _register_types() -> None:
    """The argument trees' named tuples, known to ``jax.export``'s serializer (once per process)."""
    global _registered
    if not _registered:
        from ppjax.ops.bands import BandSet
        from ppjax.ops.canvas import Geometry

        export.register_namedtuple_serialization(BandSet, serialized_name="ppjax.BandSet")
        export.register_namedtuple_serialization(Geometry, serialized_name="ppjax.Geometry")
        _registered = True


class CachedProgram:
    """``fn`` (a jitted function) called through per-shape programs: in memory for this process,
    and with a :class:`ProgramCache`, exported to and loaded from disk. ``settings`` describe the
    settings ``fn`` closes over. The same results as ``fn`` itself."""

    def __init__(self, fn: Callable, settings: dict, cache: ProgramCache | None = None):
        self.fn, self.settings, self.cache = fn, settings, cache
        self._loaded: dict = {}  # per key, once its first call has compiled it
        self._guard = threading.Lock()
        self._locks: dict = {}

    def count(self) -> int:
        """How many per-shape programs this process has traced or loaded so far."""
        return len(self._loaded)

    def __call__(self, *args, **static):
        shapes = jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), args)
        key = json.dumps([jax.tree_util.tree_structure(args).__repr__(), jax.tree_util.tree_leaves(shapes), sorted(static.items())], default=str)
        program = self._loaded.get(key)
        if program is not None:
            return program(*args)
        # Batches in flight on other threads ask for the same program at once: without the lock
        # each traced and compiled it anew (measured: two 22 s traces and two XLA compiles of the
        # edit program side by side on two cores). The first call holds it while it traces and
        # compiles (the run itself is dispatched asynchronously); the others then reuse the result.
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            program = self._loaded.get(key)
            if program is not None:  # another thread compiled it while this one waited
                return program(*args)
            program = self._program(key, args, static)
            out = program(*args)
            self._loaded[key] = program
        return out

    def _program(self, key: str, args, static) -> Callable:
        if self.cache is None:
            return functools.partial(self.fn, **static)
        _register_types()
        name = hashlib.sha256(
            json.dumps([self.cache.identity, self.settings, key, jax.__version__, ppjax.__version__, source_digest()], default=str).encode()
        ).hexdigest()[:32]
        path = Path(self.cache.folder) / f"{self.settings.get('program', 'program')}-{name}.jaxexport"
        exported = None
        if path.is_file():
            try:
                exported = export.deserialize(bytearray(path.read_bytes()))
            except Exception:  # noqa: BLE001 - a damaged or foreign file: trace anew and replace it
                exported = None
        if exported is None:
            exported = export.export(self.fn)(*args, **static)
            write_atomically(path, exported.serialize())
        return jax.jit(exported.call)


def read_json_table(path: Path) -> dict:
    """The JSON object a cache file keeps (written by :func:`write_atomically`); ``{}`` where there
    is none yet or it is damaged, so that the caller computes its entries again."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe(value: Any) -> Any:
    """A JSON-able description of a setting (dataclasses and mappings by their fields)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value):
        return asdict(value)
    if hasattr(value, "items"):
        return dict(value)
    return value
