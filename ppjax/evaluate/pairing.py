"""Originals paired with protected images by name, from a folder or a run's zip, and the JPEG
round trip a sharing platform applies.

Files are paired by :func:`ppjax.evaluate.labels.image_key` (file extensions may differ; a MediaEval
run's ``<runcode>_Places365_val_XXXXXXXX.jpg`` finds its original).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ppjax.evaluate.labels import image_key
from ppjax.io import IMAGE_SUFFIXES, iter_image_files

__all__ = ["Pair", "PairingError", "pair_images", "open_protected", "jpeg_roundtrip"]


class PairingError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    key: str
    original: Path
    protected: Path


def _images_by_key(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for f, _rel in iter_image_files([folder]):
        key = image_key(f.name)
        if key in found:
            raise PairingError(f"{folder}: two images share the name {key}: {found[key].name} and {f.name}")
        found[key] = f
    return found


def pair_images(originals: Path, protected: Path) -> tuple[list[Pair], list[str], list[str]]:
    """Pairs sorted by key, plus keys found only among originals and only among protected images."""
    if not originals.is_dir():
        raise PairingError(f"{originals}: not a folder")
    a, b = _images_by_key(originals), _images_by_key(protected)
    pairs = [Pair(k, a[k], b[k]) for k in sorted(a.keys() & b.keys())]
    return pairs, sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())


class open_protected:
    """Context manager: a folder as is, or a zip's images extracted to a temporary folder.

    Only image members are extracted, each under its bare file name (no paths from the archive
    are trusted).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if self.path.is_dir():
            return self.path
        if not zipfile.is_zipfile(self.path):
            raise PairingError(f"{self.path}: neither a folder nor a zip file")
        self._tmp = tempfile.TemporaryDirectory(prefix="ppjax-run-")
        out = Path(self._tmp.name)
        with zipfile.ZipFile(self.path) as zf:
            for info in zf.infolist():
                name = Path(info.filename).name
                if info.is_dir() or name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if (out / name).exists():
                    raise PairingError(f"{self.path}: the archive holds {name} twice")
                (out / name).write_bytes(zf.read(info))
        return out

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 encoded as JPEG at ``quality`` (4:2:0, as most encoders) and decoded again."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
