"""Photos carrying metadata the way real cameras, phones and editors write it, every leak marked with
the word :data:`SECRET` or a GPS position, and an independent reader (exiftool) to look inside.

The layouts: GPS in EXIF; an XMP packet inside EXIF (tag 0x02BC, as Lightroom and Photoshop write)
and in a JPEG segment of its own (APP1); IPTC (APP13, Photoshop's resource block); free text in
ImageDescription, UserComment, Artist, Copyright, XPComment and a JPEG comment; the owner's name,
serial numbers and a unique id; a time-zone offset; maker notes; an EXIF thumbnail (a small copy of
the original, written by exiftool); a PNG with eXIf and an iTXt XMP chunk and text chunks; a WebP
with EXIF and XMP chunks; a HEIC with EXIF and XMP; a TIFF with GPS, XMP and IPTC tags.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, TiffImagePlugin

EXIFTOOL = shutil.which("exiftool")

#: The word every free-text leak carries (a town), and the owner's name.
SECRET = "Ravenna"
OWNER = "Jane Q. Doe"

#: The camera details ``--keep-metadata`` must keep, as exiftool names them.
CAMERA_TAGS = ("Make", "Model", "DateTimeOriginal", "ExposureTime", "FNumber", "ISO", "FocalLength", "Flash", "WhiteBalance", "LensModel")

#: exiftool groups (family 1) that must never appear in an output.
FORBIDDEN_GROUPS = ("GPS", "XMP", "IPTC", "IFD1", "MakerNotes", "Photoshop", "ICC")
#: exiftool tag names that must never appear in an output.
FORBIDDEN_TAGS = (
    "ImageDescription", "UserComment", "Comment", "XPComment", "XPAuthor", "Artist", "Copyright", "OwnerName", "CameraOwnerName",
    "SerialNumber", "BodySerialNumber", "LensSerialNumber", "ImageUniqueID", "OffsetTime", "OffsetTimeOriginal", "ThumbnailImage",
    "ThumbnailOffset", "ThumbnailLength", "GPSLatitude", "GPSLongitude", "GPSPosition", "City", "Description", "Software",
)  # fmt: skip

_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
    ' xmlns:dc="http://purl.org/dc/elements/1.1/">'
    f"<exif:GPSLatitude>44,25.0N</exif:GPSLatitude><exif:GPSLongitude>12,12.0E</exif:GPSLongitude><photoshop:City>{SECRET}</photoshop:City>"
    f'<dc:creator><rdf:Seq><rdf:li>{OWNER}</rdf:li></rdf:Seq></dc:creator>'
    '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
).encode()


def pixels(seed: int = 0, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A smooth (H, W, 3) uint8 picture (compresses like a photo)."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y - seed), np.sin(4 * (x + y))], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def camera_exif() -> Image.Exif:
    """EXIF as a phone writes it, and as an editor adds to it: camera details and every leak."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "Canon EOS 5D Mark IV", "2026:07:14 18:02:11"
    exif[0x0131] = f"Editor 3.1 ({SECRET} studio)"  # Software
    exif[0x010E] = f"Taken at {SECRET}"  # ImageDescription
    exif[0x013B], exif[0x8298] = OWNER, f"(c) {OWNER}"  # Artist, Copyright
    exif[0x9C9C] = f"{SECRET} holidays".encode("utf-16-le") + b"\0\0"  # XPComment
    exif[0x02BC] = _XMP  # XMP inside EXIF
    sub = {
        0x9000: b"0231", 0x9003: "2026:07:14 18:02:11", 0x9004: "2026:07:14 18:02:11", 0x9291: "42",
        0x829A: TiffImagePlugin.IFDRational(1, 250), 0x829D: TiffImagePlugin.IFDRational(28, 10), 0x8827: 400,
        0x920A: TiffImagePlugin.IFDRational(50, 1), 0x9209: 16, 0xA403: 0, 0xA434: "EF50mm f/1.8 STM",
        0x9286: b"ASCII\0\0\0" + f"Taken at {SECRET}".encode(),  # UserComment
        0xA430: OWNER, 0xA431: "0123456789", 0xA435: "LENS99887", 0xA420: "3f2a0c1d9e8b7a6f5e4d3c2b1a090807",
        0x9011: "+01:00",  # OffsetTimeOriginal
        0x927C: f"maker notes: {SECRET}".encode(),
    }  # fmt: skip
    exif[0x8769] = sub
    exif[0x8825] = {1: "N", 2: (44.0, 25.0, 0.0), 3: "E", 4: (12.0, 12.0, 0.0), 0x1D: "2026:07:14"}
    return exif


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _iptc() -> bytes:
    """A Photoshop APP13 block with IPTC City and Caption records."""
    records = b""
    for dataset, text in ((90, SECRET), (120, f"Taken at {SECRET}"), (80, OWNER)):
        data = text.encode()
        records += struct.pack(">BBBH", 0x1C, 2, dataset, len(data)) + data
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(records)) + records + (b"\0" if len(records) % 2 else b"")
    return b"Photoshop 3.0\0" + resource


def jpeg(path: Path, seed: int = 0, rgb: np.ndarray | None = None) -> Path:
    """A camera JPEG of ``rgb`` (default: :func:`pixels`): EXIF (camera, GPS, XMP inside, free text,
    serials, maker notes), an XMP segment, IPTC, a comment, and an EXIF thumbnail (added by
    exiftool when there is one)."""
    rgb = pixels(seed) if rgb is None else rgb
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92, exif=camera_exif().tobytes())
    data = buf.getvalue()
    extra = (
        _jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0" + _XMP) + _jpeg_segment(0xED, _iptc())
        + _jpeg_segment(0xFE, f"Taken at {SECRET}".encode())
    )  # fmt: skip
    path.write_bytes(data[:2] + extra + data[2:])  # right after SOI, before the EXIF segment as editors place them too
    if EXIFTOOL:
        thumb = path.with_name(path.stem + "-thumb.jpg")
        Image.fromarray(rgb).resize((32, 24)).save(thumb, "JPEG")
        subprocess.run([EXIFTOOL, "-q", "-q", "-overwrite_original", f"-ThumbnailImage<={thumb}", str(path)], check=True)
        thumb.unlink()
    return path


def png(path: Path, seed: int = 1) -> Path:
    """A PNG with eXIf (GPS), an iTXt XMP chunk and text chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _XMP.decode())
    info.add_text("Comment", f"Taken at {SECRET}")
    info.add_text("Description", f"{SECRET} by night")
    Image.fromarray(pixels(seed)).save(path, "PNG", pnginfo=info, exif=camera_exif().tobytes())
    return path


def webp(path: Path, seed: int = 2) -> Path:
    """A WebP with EXIF and XMP chunks."""
    Image.fromarray(pixels(seed)).save(path, "WEBP", quality=90, exif=camera_exif().tobytes(), xmp=_XMP)
    return path


def heic(path: Path, seed: int = 3) -> Path:
    """An iPhone-style HEIC with EXIF (GPS) and XMP."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    Image.fromarray(pixels(seed)).save(path, "HEIF", quality=90, exif=camera_exif().tobytes(), xmp=_XMP)
    return path


def tiff(path: Path, seed: int = 4) -> Path:
    """A TIFF with camera tags, GPS, XMP (tag 700) and IPTC (tag 33723)."""
    exif = camera_exif()
    exif[33723] = _iptc()[len(b"Photoshop 3.0\0") + 12 :]  # the IPTC records themselves
    Image.fromarray(pixels(seed)).save(path, "TIFF", exif=exif.tobytes())
    return path


CORPUS = {"camera.jpg": jpeg, "screenshot.png": png, "web.webp": webp, "IMG_0001.HEIC": heic, "scan.tif": tiff}


def build(folder: Path) -> list[Path]:
    """Every layout of :data:`CORPUS` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make(folder / name) for name, make in CORPUS.items()]


def exiftool_tags(path: Path) -> dict[str, object]:
    """Every tag exiftool finds in ``path``, keyed ``group:name`` (family 1 groups, duplicates and
    unknown tags included), without exiftool's own pseudo-tags (the file's size, dates, what it
    computes) but with a JPEG's comment, which exiftool files under File."""
    raw = subprocess.run([EXIFTOOL, "-j", "-a", "-u", "-G1", "-b", str(path)], check=True, capture_output=True, text=True).stdout
    tags = json.loads(raw)[0]
    return {
        k: v for k, v in tags.items()
        if k.split(":")[0] not in ("SourceFile", "ExifTool", "System", "File", "Composite") or k == "File:Comment"  # a JPEG's COM segment
    }  # fmt: skip


def leaks(tags: dict[str, object]) -> list[str]:
    """The tags of ``tags`` that must not be in an output (location, XMP, IPTC, thumbnail, free text, owner)."""
    found = []
    for key, value in tags.items():
        group, _, name = key.partition(":")
        text = json.dumps(value) if not isinstance(value, str) else value
        if (
            any(group.startswith(g) for g in FORBIDDEN_GROUPS) or name in FORBIDDEN_TAGS or SECRET in text or "Doe" in text
            or "0123456789" in text or "LENS99887" in text
        ):  # fmt: skip
            found.append(f"{key}={text[:60]}")
    return found
