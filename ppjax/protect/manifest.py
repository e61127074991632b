"""Exactly-once, resumable outputs: a manifest of what each run wrote, and with which settings.

Every output folder holds one or more append-only JSON-lines files named ``.ppjax-manifest*.jsonl``
(one per process writing there: a shard of an array job, or a Ray worker, so no two processes ever
append to the same file). A run first appends a ``run`` record (its settings and their
fingerprint), then one ``output`` record per finished file, flushed to disk before the next file
starts: the input's file name (never its path: the folder goes where the photos go) and a keyed
digest of its bytes (never their plain sha256: see :mod:`ppjax.store.private_key`), the output's
sha256, the fingerprint, and the verdict.

An output counts as done only when its latest record has the current settings' fingerprint, the
input's current bytes and the output's current bytes. Files in progress never sit at an output's
path: they are written to a hidden staging name beside it and renamed into place only when final
(:func:`staging_path`), so a run killed at any moment leaves whole outputs or none, and the next
start removes the staging files it left (:func:`clean_leftovers`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppjax.store.install import sha256_file
from ppjax.store.private_key import keyed_digest, local_key

__all__ = [
    "MANIFEST_PREFIX", "Manifest", "Decision", "read_records", "newest_outputs", "settings_fingerprint", "variables_sha256", "staging_path",
    "clean_leftovers", "clean_staging", "sha256_file",
]  # fmt: skip

MANIFEST_PREFIX = ".ppjax-manifest"


def variables_sha256(variables) -> str:
    """sha256 of a model's weights (a pytree of arrays): their paths, dtypes, shapes and bytes."""
    import jax

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def settings_fingerprint(settings: dict) -> str:
    """sha256 of the settings as canonical JSON (sorted keys): equal settings, equal fingerprint."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def staging_path(out: Path) -> Path:
    """Where ``out`` is written while it is being made (hidden, same folder and format)."""
    return out.with_name(f".{out.name}.ppjax-staged{out.suffix}")


def clean_leftovers(outputs) -> int:
    """Remove what a killed run left for these outputs (staging files and the atomic writer's
    ``.part`` files); only these outputs', so that another shard's files in progress are kept.
    The number of files removed."""
    removed = 0
    for out in outputs:
        out = Path(out)
        staged = staging_path(out)
        if not out.parent.is_dir():
            continue
        for p in [staged, *out.parent.glob(f".{staged.name}.*.part"), *out.parent.glob(f".{out.name}.*.part")]:
            if p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def clean_staging(folder: Path) -> int:
    """Remove every staging and partial file in ``folder`` (not below it): for a folder no running
    process writes into any more. The number of files removed."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in [*folder.glob(".*.ppjax-staged.*"), *folder.glob(".*.part")]:
        if p.is_file():
            p.unlink(missing_ok=True)
            removed += 1
    return removed


@dataclass(frozen=True)
class Decision:
    """What to do with one (input, output) job: ``redo`` it, or skip it for ``reason`` (which
    starts with "done" when the output is already made with the current settings)."""

    redo: bool
    reason: str | None = None
    #: The manifest's record of an output this same run already made (a retried batch): its verdict.
    record: dict | None = None


@dataclass
class Manifest:
    """The manifest of one output folder as seen by one writer.

    ``name`` tells this writer's file apart (None: ``.ppjax-manifest.jsonl``); every writer's file
    is read. ``settings`` are recorded once per run, with their ``fingerprint``. ``run_id`` names
    the run (the workers of one distributed run share it): an output it already recorded is done
    even under ``overwrite``, so a batch retried after a worker died writes nothing twice.
    ``secret`` is this computer's private key (default :func:`~ppjax.store.private_key.local_key`; a
    distributed run hands the driver's to its workers), under which inputs are recorded;
    ``input_names`` False records no input's name either (``--private-names``).
    """

    out_dir: Path
    settings: dict
    name: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secret: bytes | None = field(default=None, repr=False)
    input_names: bool = True
    fingerprint: str = field(init=False)
    _records: dict = field(init=False, repr=False)
    _existed: bool = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _started: bool = field(init=False, repr=False, default=False)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.fingerprint = settings_fingerprint(self.settings)
        if self.secret is None:
            self.secret = local_key()
        self.refresh()

    def refresh(self) -> None:
        """Read every writer's records again (other processes may have added some)."""
        self._existed = self.out_dir.is_dir() and any(self.out_dir.glob(f"{MANIFEST_PREFIX}*.jsonl"))
        self._records = newest_outputs(self.out_dir) if self._existed else {}

    @property
    def path(self) -> Path:
        return self.out_dir / (f"{MANIFEST_PREFIX}.{self.name}.jsonl" if self.name else f"{MANIFEST_PREFIX}.jsonl")

    def key(self, out: Path) -> str:
        """The output's path relative to the folder, as recorded."""
        return Path(out).resolve().relative_to(self.out_dir.resolve()).as_posix()

    def decide(self, src: Path, out: Path, overwrite: bool) -> Decision:
        """Whether to make ``out`` from ``src`` now (see the module's rule)."""
        out = Path(out)
        if not out.exists():
            return Decision(True)
        rec = self._records.get(self.key(out))
        if rec is not None and rec.get("run_id") == self.run_id and rec.get("fingerprint") == self.fingerprint:
            if rec.get("output_sha256") == sha256_file(out):
                return Decision(False, "done with these settings (this run)", record=rec)
        if overwrite:
            return Decision(True, "overwritten (--overwrite)")
        if rec is None:
            if self._existed:  # our folder, and no record: renamed into place just before a kill
                return Decision(True, "redone: the run that wrote it ended before recording it")
            return Decision(False, "output exists and no ppjax manifest says how it was made (use --overwrite)")
        if rec.get("fingerprint") != self.fingerprint:
            return Decision(False, "output made with other settings (use --overwrite to redo it)")
        if not self._same_input(rec, src):
            made_from = Path(str(rec.get("input") or "")).name
            if made_from and made_from != Path(src).name:
                return Decision(False, f"output was made from another input, {made_from} (use --overwrite to redo it)")
            return Decision(False, "input changed since its output was made, or it was made on another computer (use --overwrite to redo it)")
        if rec.get("output_sha256") != sha256_file(out):
            return Decision(False, "output changed since it was written (use --overwrite to redo it)")
        return Decision(False, "done with these settings (manifest)")

    def input_digest(self, src: Path, sha256: str | None = None) -> str:
        """The input's bytes as recorded: HMAC-SHA256 under this computer's key of their sha256
        (``sha256``: of the bytes that were decoded; None: of the file's bytes now)."""
        return keyed_digest(sha256 or sha256_file(src), self.secret)

    def _same_input(self, rec: dict, src: Path) -> bool:
        if "input_hmac" in rec:
            return rec["input_hmac"] == self.input_digest(src)
        return rec.get("input_sha256") == sha256_file(src)  # a record of ppjax before 2026-12-07

    def commit(self, src: Path, staged: Path, out: Path, verdict: dict, input_sha256: str | None = None) -> None:
        """Rename the finished ``staged`` file to ``out`` and record it, flushed to disk before
        returning: from here on the output counts as done. ``input_sha256``: the digest of the
        input's bytes the output was made from (as decoded); should the file have changed since
        (edited while the run went on), the record says so by not matching it, and the next run
        reports the input changed instead of taking the old version's output as done."""
        # The input by its file name alone: the folder is shared with the photos, and a path names
        # its owner's folders (an account, an event, a place); the name is the output's own anyway.
        entry = {
            "kind": "output", "output": self.key(out), "input": Path(src).name if self.input_names else None, "input_hmac": self.input_digest(src, input_sha256),
            "output_sha256": sha256_file(staged), "fingerprint": self.fingerprint, "run_id": self.run_id,
        }  # fmt: skip
        os.replace(staged, out)
        entry["written_at"] = _now()
        entry.update(verdict)
        self._append(entry)

    def _append(self, record: dict) -> None:
        self.start()
        with self._lock:
            self._write(record)

    def _write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def start(self) -> None:
        """Record this run's settings now (a run that writes nothing still leaves its mark, so
        its folder counts as one that ppjax keeps a manifest of)."""
        with self._lock:
            if not self._started:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self._started = True
                self._scrub()
                self._write({"kind": "run", "run_id": self.run_id, "started_at": _now(), "fingerprint": self.fingerprint, "settings": self.settings})

    def _scrub(self) -> None:
        """Rewrite this writer's own manifest file if an earlier ppjax left in it what is no longer
        recorded: an input's full path (its owner's folders) or its plain sha256 (which anyone
        holding the original can match). Each becomes the file name, and the keyed digest of that
        same sha256, so the outputs are still recognised. Only this writer's file: by the module's
        rule no other process appends to it, so nothing is lost by the rewrite."""
        if not self.path.is_file():
            return
        lines, changed = [], False
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                lines.append(line)  # cut short by a kill: readers skip it, as before
                continue
            if isinstance(rec, dict) and rec.get("kind") == "output":
                name = rec.get("input")
                if isinstance(name, str) and ("/" in name or "\\" in name):
                    rec["input"], changed = name.replace("\\", "/").rsplit("/", 1)[-1], True
                if "input_sha256" in rec:
                    plain = rec.pop("input_sha256")
                    if isinstance(plain, str) and "input_hmac" not in rec:
                        with contextlib.suppress(ValueError):  # not a sha256: the record no longer matches any input
                            rec["input_hmac"] = keyed_digest(plain, self.secret)
                    changed = True
            lines.append(json.dumps(rec, sort_keys=True, default=str))
        if not changed:
            return
        staged = self.path.with_name(f".{self.path.name}.{os.getpid()}.scrub")
        with open(staged, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(staged, self.path)
        self.refresh()


def read_records(folder: Path):
    """Every record of the ppjax manifests in ``folder`` (none when it has none); a line cut short
    by a kill is skipped (its file was never counted as done)."""
    for f in sorted(Path(folder).glob(f"{MANIFEST_PREFIX}*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def newest_outputs(folder: Path) -> dict[str, dict]:
    """``{output path relative to folder: its newest output record}`` over every writer's manifest."""
    found: dict[str, dict] = {}
    for rec in read_records(folder):
        if rec.get("kind") == "output" and isinstance(rec.get("output"), str):
            prev = found.get(rec["output"])
            if prev is None or rec.get("written_at", "") >= prev.get("written_at", ""):
                found[rec["output"]] = rec
    return found


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
