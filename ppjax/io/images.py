"""Image files in and out: decode to RGB uint8, write atomically without metadata.

Reading accepts JPEG, PNG, WebP, TIFF, BMP, GIF (first frame) and HEIC/HEIF (the iPhone's format,
through pillow-heif), and nothing else: any other file is refused from its first bytes, before any
decoder runs (Pillow would otherwise hand a PostScript file to Ghostscript). The size limit is read
from the header, without decoding pixels, for every format. 1-, 8- and 16-bit; grayscale, palette,
RGB(A), CMYK; applies the EXIF orientation; converts ICC-tagged images to sRGB. Alpha is returned
separately so the core only ever sees RGB, and is re-attached when writing PNG.

Writing produces PNG (lossless, default) or JPEG, through a temporary file in the destination
folder and an atomic rename, so a crash never leaves a half-written image under the final name.
By default no metadata at all is written (no EXIF, GPS, XMP, IPTC or ICC): a protected photo must
not leak where it was taken. Asked to (``exif=``), a new EXIF block with only the allowlisted
camera details is written (:mod:`ppjax.io.metadata`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ppjax.io.metadata import camera_exif

__all__ = [
    "IMAGE_SUFFIXES",
    "PHOTO_FORMATS",
    "PHOTO_FORMAT_NAMES",
    "DEFAULT_MAX_PIXELS",
    "ImageHeader",
    "ImageReadError",
    "ImageWriteError",
    "InputCheck",
    "LoadedImage",
    "peek_size",
    "read_header",
    "read_image",
    "write_image",
    "iter_image_files",
    "to_float01",
    "to_uint8",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"})

#: The only formats ever decoded, by Pillow's names (JPEG includes a phone's JPEG with a second
#: picture in it, which Pillow calls MPO; HEIF is pillow-heif's, for HEIC and HEIF).
PHOTO_FORMATS = ("JPEG", "PNG", "HEIF", "WEBP", "TIFF", "BMP", "GIF")
PHOTO_FORMAT_NAMES = "JPEG, PNG, HEIC/HEIF, WebP, TIFF, BMP and GIF"

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

_SRGB = ImageCms.createProfile("sRGB")


class ImageReadError(Exception):
    """A file could not be read as an image (or a model could not process it); ``str()`` is one
    line naming the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageWriteError(Exception):
    """An image could not be written; ``str()`` is one line naming the destination; ``errno`` the
    system's error number when the system refused (ENOSPC: the disk is full), else None."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``rgb`` is (H, W, 3) uint8 sRGB, ``alpha`` (H, W) uint8 or None; ``exif``
    a new EXIF block of the photo's allowlisted camera details alone (None when it had none), for a
    caller that is asked to keep them (:func:`ppjax.io.metadata.camera_exif`); ``sha256`` the
    digest of the file's bytes that were decoded (hex), which a record of what was made from them
    must name, not the bytes the file holds later."""

    path: Path
    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    exif: bytes | None = None
    sha256: str | None = None

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
    files of another format than :data:`PHOTO_FORMATS` (refused before any decoder runs), truncated
    data and images larger than ``max_pixels`` (width x height, read from the header).
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
            # ppjax applies its own limit, from the header; Pillow's hard error (2x its warning
            # level) is turned into the same message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = _open_photo(io.BytesIO(data), path, max_pixels)
            fmt = img.format or "unknown"
            img.seek(0)  # first frame of animations
            img.load()
            exif = _camera_details(img)  # before the turn, which leaves a TIFF's tags behind (it only reads)
            img = ImageOps.exif_transpose(img)
            icc = img.info.get("icc_profile")
            color, alpha = _split_alpha(img)
            rgb = _to_srgb(color, icc, path)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower() or isinstance(e, EOFError):
            reason = f"truncated or corrupt image data ({reason})"
        raise ImageReadError(path, f"cannot decode: {reason}") from None
    return LoadedImage(path=path, rgb=np.ascontiguousarray(rgb), alpha=alpha, format=fmt, exif=exif, sha256=hashlib.sha256(data).hexdigest())


def _camera_details(img: Image.Image) -> bytes | None:
    """The photo's allowlisted camera fields (:func:`ppjax.io.metadata.camera_exif`), or None."""
    try:
        return camera_exif(img.getexif())
    except Exception:  # noqa: BLE001 - broken metadata never costs the photo; it is dropped
        return None


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: Pillow's ``format`` name, the stored ``width`` and
    ``height`` in pixels, and whether its EXIF orientation ``turned`` it a quarter turn."""

    format: str
    width: int
    height: int
    turned: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) as :func:`read_image` returns the pixels (orientation applied)."""
        return (self.width, self.height) if self.turned else (self.height, self.width)


def read_header(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """The header of an image file, read without decoding its pixels: its format must be one of
    :data:`PHOTO_FORMATS` (no other decoder is ever tried) and its size at most ``max_pixels``.
    Raises :class:`ImageReadError` saying why not."""
    path = Path(path)
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if not f.read(1):
                raise ImageReadError(path, "empty file (0 bytes)")
            f.seek(0)
            with _open_photo(f, path, max_pixels) as img:
                w, h = img.size
                turned = _orientation(img, f) in (5, 6, 7, 8)  # orientations that swap the axes
                return ImageHeader(img.format or "unknown", w, h, turned)
    except ImageReadError:
        raise
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot read ({e.strerror or e})") from None
    except (SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(path, f"cannot read its header: {str(e) or type(e).__name__}") from None


def peek_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) of an image file as :func:`read_image` will return it (EXIF orientation
    applied), read from its header without decoding; None when the header cannot be read or is
    refused (the decoder then says why)."""
    try:
        return read_header(path, max_pixels=2**62).size
    except ImageReadError:
        return None


def _open_photo(fp, path: Path, max_pixels: int) -> Image.Image:
    """``Image.open`` restricted to :data:`PHOTO_FORMATS`, the size checked against ``max_pixels``."""
    Image.init()
    try:
        img = Image.open(fp, formats=[f for f in PHOTO_FORMATS if f in Image.OPEN])
    except UnidentifiedImageError:
        raise ImageReadError(path, _not_a_photo(fp)) from None
    except Image.DecompressionBombError:
        raise ImageReadError(path, _too_large(_size_past_pillows_limit(fp), max_pixels)) from None
    if img.size[0] * img.size[1] > max_pixels:
        size = img.size
        img.close()
        raise ImageReadError(path, _too_large(size, max_pixels))
    return img


def _too_large(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"exceeds the limit of {max_pixels:,} pixels (possible decompression bomb)"
    if size is None:
        return f"image size {limit}"
    w, h = size
    return f"{w}x{h} image ({w * h / 1e6:.1f} megapixels) {limit}"


def _size_past_pillows_limit(fp) -> tuple[int, int] | None:
    """The (width, height) of an image Pillow refused as a decompression bomb: its format's header
    reader called directly, without Pillow's check (still no pixels decoded)."""
    Image.init()
    for fmt in PHOTO_FORMATS:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is None:
            continue
        fp.seek(0)
        if accept is not None and not accept(fp.read(16)):
            continue
        try:
            fp.seek(0)
            return factory(fp, "").size
        except Exception:  # noqa: BLE001 - then the message goes without the size
            continue
    return None


#: What a few common files that are not photos start with, to say what was given instead.
_NOT_PHOTOS = (
    (b"%!PS", "a PostScript file"), (b"\xc5\xd0\xd3\xc6", "a PostScript file"), (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"), (b"<svg", "an SVG drawing"), (b"<?xml", "an XML file"),
)  # fmt: skip


def _not_a_photo(fp) -> str:
    fp.seek(0)
    head = fp.read(64).lstrip()
    what = next((name for magic, name in _NOT_PHOTOS if head.startswith(magic)), None)
    return f"not a photo ppjax reads{f' ({what})' if what else ''}: it reads {PHOTO_FORMAT_NAMES}"


def _orientation(img: Image.Image, fp) -> int:
    """The EXIF orientation (1..8) without decoding any pixels. Pillow's ``getexif`` decodes a
    whole PNG to look for an eXIf chunk after its image data; that chunk is found here by walking
    the chunk headers instead."""
    try:
        if img.format != "PNG":
            return int(img.getexif().get(0x0112, 1))
        data = img.info.get("exif") or _png_chunk(fp, b"eXIf")
        if not data:
            return 1
        exif = Image.Exif()
        exif.load(data)
        return int(exif.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - unreadable metadata: the photo as stored
        return 1


def _png_chunk(fp, kind: bytes) -> bytes | None:
    """The data of the first chunk of ``kind`` in a PNG file, found by its chunk headers alone."""
    fp.seek(8)
    while True:
        head = fp.read(8)
        if len(head) < 8:
            return None
        length, name = int.from_bytes(head[:4], "big"), head[4:]
        if name == kind:
            return fp.read(length)
        if name == b"IEND":
            return None
        fp.seek(length + 4, os.SEEK_CUR)  # the data and its CRC


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
    given (as :attr:`LoadedImage.exif` holds it: the allowlisted camera details).

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
            raise ImageWriteError(f"{path}: cannot write ({e.strerror or e})", e.errno) from None
        raise
    return path


class InputCheck:
    """Whether a path is one of the inputs (by path, or the same file under another name), for a
    whole run's outputs: the inputs are resolved and stat'ed once, each output in one lookup."""

    def __init__(self, sources):
        self.paths = {Path(p).resolve() for p in sources}
        self.nodes = set()
        for p in self.paths:
            with contextlib.suppress(OSError):
                st = p.stat()
                self.nodes.add((st.st_dev, st.st_ino))

    def __call__(self, out: Path) -> bool:
        if out.resolve() in self.paths:
            return True
        try:
            st = out.stat()
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.nodes


def check_output_folder(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike) -> None:
    """Raise ``ValueError`` when ``out_dir`` is one of the input folders: outputs would be written
    over the originals or beside them, where the next run would take them for new photos."""
    out = Path(out_dir).resolve()
    for p in inputs:
        if Path(p).is_dir() and Path(p).resolve() == out:
            raise ValueError(
                f"the output folder {out_dir} is the input folder {p}: the outputs would be written over the originals or "
                f"beside them (where the next run would take them for new photos); choose another, e.g. -o {Path(p) / 'protected'}"
            )


def iter_image_files(
    inputs: Iterable[str | os.PathLike], skip: str | os.PathLike | None = None, left_out: list | None = None,
) -> Iterator[tuple[Path, Path]]:
    """Yield ``(file, relative_path)`` for every input file and every image file under input folders.

    Files named explicitly are yielded whatever their suffix (reading reports non-images); folders
    are walked recursively in sorted order, keeping only known image suffixes and skipping hidden
    entries and the folder ``skip`` below them (the output folder: ``ppjax protect Photos -o
    Photos/protected`` run again must not take its own outputs for new photos). ``relative_path``
    is the path below the folder given (the bare name for files). ``left_out``, when given, gets
    every file under a folder that is not taken for its suffix (a video, a RAW ``.dng``): a person
    must hear which of their files were not protected, not find out after sharing the folder.
    """
    skipped = None if skip is None else Path(skip).resolve()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skipped is None or (Path(root) / d).resolve() != skipped))
                for name in sorted(files):
                    f = Path(root) / name
                    if name.startswith("."):
                        continue
                    if f.suffix.lower() in IMAGE_SUFFIXES:
                        yield f, f.relative_to(p)
                    elif left_out is not None:
                        left_out.append(f)
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
