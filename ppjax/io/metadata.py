"""The camera details ``--keep-metadata`` keeps, by allowlist: nothing else of a photo's metadata
ever reaches an output.

A photo carries far more than its pixels: GPS coordinates, XMP packets (inside the EXIF block or a
segment of their own, which Lightroom, Photoshop and phones fill with ``exif:GPSLatitude`` and
``photoshop:City``), IPTC records, maker notes, free-text fields ("Taken at <town>"), the owner's
name and the camera's serial number, and a thumbnail, a small copy of the unprotected original.
Removing what is known to be bad always misses something; so ppjax builds a new EXIF block holding
only :data:`CAMERA_FIELDS`, each value checked to be of the kind its field holds (dates as dates,
numbers as numbers, names short), and writes nothing else. Time-zone offsets are left out (they
narrow down where a photo was taken); the colour profile is not needed, since every output's
pixels are sRGB.
"""

from __future__ import annotations

import re
from fractions import Fraction
from numbers import Rational

from PIL import Image, TiffImagePlugin

__all__ = ["CAMERA_FIELDS", "camera_exif"]

_EXIF_IFD = 0x8769
_DATE = re.compile(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}")

#: The fields kept: (where, tag) -> (name, kind). ``where`` is "ifd0" (the main directory) or
#: "exif" (the Exif sub-directory); kind "name" is short text, "date" an EXIF date and time,
#: "digits" a few digits (sub-seconds), "number" integers or fractions, "version" four ASCII bytes.
CAMERA_FIELDS: dict[tuple[str, int], tuple[str, str]] = {
    ("ifd0", 0x010F): ("Make", "name"),
    ("ifd0", 0x0110): ("Model", "name"),
    ("ifd0", 0x0132): ("DateTime", "date"),
    ("exif", 0x9000): ("ExifVersion", "version"),
    ("exif", 0x9003): ("DateTimeOriginal", "date"),
    ("exif", 0x9004): ("DateTimeDigitized", "date"),
    ("exif", 0x9290): ("SubSecTime", "digits"),
    ("exif", 0x9291): ("SubSecTimeOriginal", "digits"),
    ("exif", 0x9292): ("SubSecTimeDigitized", "digits"),
    ("exif", 0x829A): ("ExposureTime", "number"),
    ("exif", 0x829D): ("FNumber", "number"),
    ("exif", 0x8822): ("ExposureProgram", "number"),
    ("exif", 0x8827): ("ISOSpeedRatings", "number"),
    ("exif", 0x9201): ("ShutterSpeedValue", "number"),
    ("exif", 0x9202): ("ApertureValue", "number"),
    ("exif", 0x9204): ("ExposureBiasValue", "number"),
    ("exif", 0x9205): ("MaxApertureValue", "number"),
    ("exif", 0x9207): ("MeteringMode", "number"),
    ("exif", 0x9209): ("Flash", "number"),
    ("exif", 0x920A): ("FocalLength", "number"),
    ("exif", 0xA402): ("ExposureMode", "number"),
    ("exif", 0xA403): ("WhiteBalance", "number"),
    ("exif", 0xA405): ("FocalLengthIn35mmFilm", "number"),
    ("exif", 0xA432): ("LensSpecification", "number"),
    ("exif", 0xA433): ("LensMake", "name"),
    ("exif", 0xA434): ("LensModel", "name"),
}

#: The longest camera, lens or maker name kept, in characters (a real one is under 40).
_NAME_CHARS = 64


def _checked(kind: str, value):
    """``value`` as field of ``kind`` holds it, or None when it is not such a value."""
    if kind == "name":
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="ignore")
        if not isinstance(value, str):
            return None
        value = "".join(ch for ch in value if ch.isprintable()).strip("\x00 ")
        return value[:_NAME_CHARS] or None
    if kind in ("date", "digits"):
        value = value.decode("ascii", errors="ignore") if isinstance(value, bytes) else value
        if not isinstance(value, str):
            return None
        value = value.strip("\x00 ")
        ok = _DATE.fullmatch(value) if kind == "date" else (value.isdigit() and len(value) <= 9)
        return value if ok else None
    if kind == "version":
        return value if isinstance(value, bytes) and len(value) == 4 and value.isdigit() else None
    if kind == "number":
        items = value if isinstance(value, tuple) else (value,)
        if not items or len(items) > 4 or not all(_is_number(v) for v in items):
            return None
        return value
    raise ValueError(f"unknown field kind {kind!r}")


def _is_number(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, TiffImagePlugin.IFDRational):
        return v.denominator != 0
    return isinstance(v, (int, Rational, Fraction)) or (isinstance(v, float) and v == v)


def camera_exif(exif: Image.Exif) -> bytes | None:
    """A new EXIF block (as ``write_image(exif=...)`` takes it) with only :data:`CAMERA_FIELDS`
    of ``exif``, each checked; None when none is there."""
    ifd0, sub = {}, {}
    try:
        source_sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - a broken sub-directory costs only its fields
        source_sub = {}
    for (where, tag), (_name, kind) in CAMERA_FIELDS.items():
        value = (exif if where == "ifd0" else source_sub).get(tag)
        value = None if value is None else _checked(kind, value)
        if value is not None:
            (ifd0 if where == "ifd0" else sub)[tag] = value
    if not ifd0 and not sub:
        return None
    kept = Image.Exif()
    for tag, value in ifd0.items():
        kept[tag] = value
    if sub:
        kept[_EXIF_IFD] = sub
    return kept.tobytes()
