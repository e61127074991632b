"""Image files in and out: decode to RGB uint8, write atomically without metadata.

Reading accepts JPEG, PNG, WebP, TIFF, BMP, GIF (first frame) and HEIC/HEIF (the iPhone's format,
through pillow-heif); 1-, 8- and 16-bit; grayscale, palette, RGB(A), CMYK; applies the EXIF
orientation; converts ICC-tagged images to sRGB. Alpha is returned separately so the core only
ever sees RGB, and is re-attached when writing PNG.

Writing produces PNG (lossless, default) or JPEG, through a temporary file in the destination
folder and an atomic rename, so a crash never leaves a half-written image under the final name.
By default no EXIF, GPS, XMP or ICC chunk is carried over: a protected photo must not leak where it
was taken. Asked to (``exif=``), the photo's EXIF is written back without its location (the GPS
block), its maker notes (opaque, and some hold a location) and its orientation (already applied).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "DEFAULT_MAX_PIXELS",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "peek_size",
    "read_image",
    "write_image",
    "iter_image_files",
    "to_float01",
    "to_uint8",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"})

#: Largest image accepted by default, in pixels (width x height): 80 megapixels, beyond any phone
#: camera. A file claiming more is refused from its header, before its pixels are decoded. Pillow
#: refuses anything above twice its own warning level (about 179 megapixels) whatever this is.
DEFAULT_MAX_PIXELS = 80_000_000

try:  # HEIC/HEIF, the default format of iPhones; without pillow-heif such files are reported unreadable
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_READABLE = True
except ImportError:  # pragma: no cover - a core dependency; kept optional for minimal installs
    HEIF_READABLE = False

#: EXIF tags never written back: the GPS block, maker notes, the orientation (already applied).
_EXIF_DROPPED = (0x8825, 0x927C, 0x0112)

_SRGB = ImageCms.createProfile("sRGB")


class ImageReadError(Exception):
    """A file could not be read as an image (or a model could not process it); ``str()`` is one
    line naming the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageWriteError(Exception):
    """An image could not be written; ``str()`` is one line naming the destination."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``rgb`` is (H, W, 3) uint8 sRGB, ``alpha`` (H, W) uint8 or None; ``exif``
    the photo's EXIF without its location, maker notes and orientation (None when it had none),
    for a caller that is asked to keep it."""

    path: Path
    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    exif: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.rgb.shape[0], self.rgb.shape[1]


def _high_bit_depth_to_uint8(a: np.ndarray) -> np.ndarray:
    """16-bit integer (or [0,1] float) samples to uint8 with rounding."""
    if a.dtype.kind == "f":
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    a = a.astype(np.float64)
    scale = 257.0 if a.max(initial=0) > 255 else 1.0  # 16-bit samples, else 8-bit values in a wide type
    return np.clip(np.rint(a / scale), 0, 255).astype(np.uint8)


def _split_alpha(img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        if img.mode in ("RGBa", "La"):  # premultiplied
            img = img.convert(img.mode[:-1] + "A")
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8)
        return img.convert(img.mode[:-1]), alpha
    return img, None


def _to_srgb(img: Image.Image, icc: bytes | None, path: Path) -> np.ndarray:
    if img.mode.startswith("I") or img.mode == "F":
        gray = _high_bit_depth_to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=-1)
    if icc and img.mode in ("RGB", "L", "CMYK"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            img = ImageCms.profileToProfile(img, src, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError) as e:
            # A broken embedded profile should not cost the user the photo: fall back to the
            # plain conversion, which is what most viewers show.
            warnings.warn(f"{path}: ignoring unusable ICC profile ({e})", stacklevel=3)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file to sRGB uint8 (see module docstring).

    Raises :class:`ImageReadError` with a one-line reason for unreadable paths, empty files,
    non-images, truncated data and images larger than ``max_pixels`` (width x height).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot read ({e.strerror or e})") from None
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # ppjax applies its own limit below; Pillow's hard error (2x its warning level) remains.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageReadError(
                    path, f"{width}x{height} image exceeds the limit of {max_pixels:,} pixels (possible decompression bomb)"
                )
            fmt = img.format or "unknown"
            img.seek(0)  # first frame of animations
            img.load()
            img = ImageOps.exif_transpose(img)
            exif = _clean_exif(img)  # after: it must not take the orientation away before it is applied
            icc = img.info.get("icc_profile")
            color, alpha = _split_alpha(img)
            rgb = _to_srgb(color, icc, path)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image, or a format ppjax cannot read") from None
    except Image.DecompressionBombError:
        raise ImageReadError(
            path, f"image size exceeds the limit of {min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS):,} pixels (possible decompression bomb)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower() or isinstance(e, EOFError):
            reason = f"truncated or corrupt image data ({reason})"
        raise ImageReadError(path, f"cannot decode: {reason}") from None
    return LoadedImage(path=path, rgb=np.ascontiguousarray(rgb), alpha=alpha, format=fmt, exif=exif)


def _clean_exif(img: Image.Image) -> bytes | None:
    """The image's EXIF without :data:`_EXIF_DROPPED`, serialised (None: none, or unreadable)."""
    try:
        exif = img.getexif()
        for tag in _EXIF_DROPPED:
            exif.pop(tag, None)
        exif.get_ifd(0x8769).pop(0x927C, None)  # maker notes live in the Exif sub-IFD
        return exif.tobytes() if len(exif) else None
    except Exception:  # noqa: BLE001 - broken metadata never costs the photo; it is dropped
        return None


def peek_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) of an image file as :func:`read_image` will return it (EXIF orientation
    applied), read from its header without decoding; None when the header cannot be read (the
    decoder then says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # orientations that swap the axes
    except Exception:  # noqa: BLE001 - any failure is read_image's to explain
        return None
    return (w, h) if turned else (h, w)


def _umask() -> int:
    """The process's umask. Linux reports it in /proc; elsewhere it can only be read by setting it,
    so it is set back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


#: Above this many pixels PNG files are written with zlib's fastest level (see :func:`write_image`).
_PNG_FAST_PIXELS = 4_000_000


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    jpeg_quality: int = 95,
    sources: Iterable[str | os.PathLike] = (),
    exif: bytes | None = None,
) -> Path:
    """Write ``rgb`` ((H, W, 3) uint8) to ``path`` atomically, without metadata but ``exif`` when
    given (as :attr:`LoadedImage.exif` holds it: no location).

    The format follows the suffix: ``.png`` (alpha re-attached when given) or ``.jpg``/``.jpeg``
    (``jpeg_quality`` 1..100, 4:4:4 chroma so colours stay sharp; alpha cannot be stored and is
    dropped). Refuses to write over any path in ``sources`` (the inputs). Returns ``path``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise ImageWriteError(f"{path}: unsupported output format {suffix or '(none)'}; use .png or .jpg")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ImageWriteError(f"{path}: expected (H, W, 3) uint8 pixels, got {rgb.shape} {rgb.dtype}")
    if not 1 <= jpeg_quality <= 100:
        raise ImageWriteError(f"{path}: JPEG quality must be in 1..100, got {jpeg_quality}")
    for src in sources:
        if Path(src).resolve() == path.resolve() or _same_file(Path(src), path):
            raise ImageWriteError(f"{path}: refusing to overwrite an input image")
    if suffix == ".png" and alpha is not None:
        img = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    else:
        img = Image.fromarray(rgb, "RGB")
    # zlib level 6, not PIL's optimize=True (level 9 and filter trials): 2.0 s against 0.45 s for
    # a 1024x1024 photo, for files 2.6% smaller. Above 4 megapixels level 1: a 12-megapixel photo
    # takes 0.6 s instead of 2.9, for a file 18% larger (13.8 MB against 11.7).
    level = 6 if rgb.shape[0] * rgb.shape[1] <= _PNG_FAST_PIXELS else 1
    options = {"compress_level": level} if suffix == ".png" else {"quality": jpeg_quality, "subsampling": 0}
    if exif:
        options["exif"] = exif
    fmt = "PNG" if suffix == ".png" else "JPEG"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp makes the file 0600; a normal write gets 0666 less the umask (0644 usually), so
        # a protected photo copied to a web folder stays readable there.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            img.save(f, format=fmt, **options)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ImageWriteError(f"{path}: cannot write ({e.strerror or e})") from None
        raise
    return path


def iter_image_files(inputs: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, Path]]:
    """Yield ``(file, relative_path)`` for every input file and every image file under input folders.

    Files named explicitly are yielded whatever their suffix (reading reports non-images); folders
    are walked recursively in sorted order, keeping only known image suffixes and skipping hidden
    entries. ``relative_path`` is the path below the folder given (the bare name for files).
    """
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    f = Path(root) / name
                    if not name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
                        yield f, f.relative_to(p)
        else:
            yield p, Path(p.name)


def to_float01(rgb: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1] (same shape)."""
    return np.asarray(rgb, dtype=np.float32) / np.float32(255.0)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] to uint8 by rounding to the nearest level (same shape)."""
    return np.clip(np.rint(np.asarray(x01, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def resize_shorter_side(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W, 3) uint8 so the shorter side is ``size`` pixels (bicubic, antialiased)."""
    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0))
