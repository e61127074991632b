"""Metadata by allowlist and hostile files refused from their header.

The metadata corpus (tests/metadata_corpus.py) carries location, XMP, IPTC, free text, the owner,
serial numbers and a thumbnail in the layouts real cameras, phones and editors use; exiftool, an
independent reader, looks at every output."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppjax.io import ImageReadError, read_header, read_image, write_image
from ppjax.io.images import peek_size
from ppjax.io.metadata import CAMERA_FIELDS, camera_exif

from .. import metadata_corpus as corpus
from ..conftest import ROOT

needs_exiftool = pytest.mark.skipif(corpus.EXIFTOOL is None, reason="needs exiftool (apt-get install libimage-exiftool-perl; .ci/run installs it)")


@needs_exiftool
@pytest.mark.parametrize("name", list(corpus.CORPUS))
def test_no_output_carries_anything_but_the_allowlisted_camera_details(tmp_path, name):
    pytest.importorskip("pillow_heif")
    source = corpus.CORPUS[name](tmp_path / name)
    found = corpus.exiftool_tags(source)
    leaks_in = corpus.leaks(found)
    # The corpus really carries what must not come out: location, XMP, free text, the owner.
    assert any(k.startswith("GPS:") for k in found) and any(k.startswith("XMP") for k in found), sorted(found)
    assert any(corpus.SECRET in str(v) for v in found.values()) and len(leaks_in) >= 15, leaks_in
    if name.endswith(".jpg"):
        assert {"IFD1:ThumbnailImage", "IPTC:City", "File:Comment"} <= set(found)

    image = read_image(source)
    for suffix in (".jpg", ".png"):
        kept = corpus.exiftool_tags(write_image(tmp_path / f"kept{suffix}", image.rgb, exif=image.exif))
        assert corpus.leaks(kept) == [], (name, suffix)
        names = {k.split(":")[1] for k in kept}
        assert set(corpus.CAMERA_TAGS) <= names, (name, suffix, sorted(names))
        assert kept["IFD0:Make"] == "Canon" and kept["ExifIFD:ISO"] == 400 and kept["ExifIFD:DateTimeOriginal"] == "2026:07:14 18:02:11"
        bare = corpus.exiftool_tags(write_image(tmp_path / f"bare{suffix}", image.rgb))
        assert not [k for k in bare if k.split(":")[0] not in ("JFIF", "PNG")], (name, suffix, sorted(bare))


def test_the_allowlist_checks_each_value():
    exif = Image.Exif()
    exif[0x010F] = "C" * 500  # a name that is really a paragraph
    exif[0x0110] = "Pixel 8\x00\x07"
    exif[0x0132] = f"taken in {corpus.SECRET}"  # not a date
    exif[0x8769] = {0x8827: "four hundred", 0x829A: (1, 2, 3, 4, 5), 0x9209: 16, 0x9291: "12a", 0x9290: "07", 0x9000: b"0231"}
    source, found = Image.Exif(), Image.Exif()
    source.load(exif.tobytes())  # as read from a file
    found.load(camera_exif(source))
    sub = found.get_ifd(0x8769)
    assert found[0x010F] == "C" * 64 and found[0x0110] == "Pixel 8" and 0x0132 not in found
    assert dict(sub) == {0x9209: 16, 0x9290: "07", 0x9000: b"0231"}
    assert camera_exif(Image.Exif()) is None
    assert all(where in ("ifd0", "exif") for where, _ in CAMERA_FIELDS)


def _png(width: int, height: int, rows: int | None = None, after_idat: bytes = b"") -> bytes:
    """A PNG of zeros (``rows`` of them compressed, all when None), with chunks after its data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    data = b"".join(z.compress(row) for _ in range(height if rows is None else rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + after_idat + chunk(b"IEND", b"")


def test_a_zero_png_of_168_megapixels_is_refused_from_its_header(tmp_path):
    """12000x14000 zeros compress to half a megabyte; refusing it must not decode it (504 MB)."""
    bomb = tmp_path / "zeros.png"
    bomb.write_bytes(_png(12000, 14000))
    assert bomb.stat().st_size < 1_000_000
    probe = (
        "import resource, sys\nfrom ppjax.io import read_header, read_image, ImageReadError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for f in (read_header, read_image):\n"
        "    try:\n        f(sys.argv[1])\n        print('accepted')\n"
        "    except ImageReadError as e:\n        print(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )  # fmt: skip
    run = subprocess.run([sys.executable, "-c", probe, str(bomb)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stderr
    assert all("12000x14000 image (168.0 megapixels) exceeds the limit of 80,000,000 pixels" in line for line in lines[:2]), lines
    assert int(lines[2]) < 50, f"peak memory grew by {lines[2]} MB"


def test_pillows_own_bomb_error_says_the_size_too(tmp_path):
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(_png(20000, 20000, rows=1))  # 400 MP, over Pillow's own hard limit
    for read in (read_header, read_image):
        with pytest.raises(ImageReadError, match=r"20000x20000 image \(400.0 megapixels\) exceeds the limit"):
            read(bomb)


def test_orientation_after_a_pngs_image_data_is_read_without_decoding(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter: the photo is 30 wide and 20 high once upright
    body = exif.tobytes()[6:]  # a PNG's eXIf holds the TIFF structure alone
    kind = b"eXIf"
    trailing = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    path = tmp_path / "turned.png"
    path.write_bytes(_png(20, 30, after_idat=trailing))
    assert read_header(path).size == (20, 30) and peek_size(path) == (20, 30)
    assert read_image(path).size == (20, 30)  # Pillow agrees once it decodes


@pytest.fixture
def fake_ghostscript(tmp_path, monkeypatch) -> Path:
    """A ``gs`` first on PATH that leaves a mark when anything runs it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mark = tmp_path / "gs-ran"
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\necho \"$@\" >> {mark}\nexit 1\n")
    gs.chmod(gs.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return mark


@pytest.mark.parametrize("name", ["drawing.eps", "drawing.jpg", "drawing.png"])
def test_postscript_is_refused_before_any_decoder_runs(tmp_path, fake_ghostscript, name):
    eps = tmp_path / name
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n0 0 moveto 64 64 lineto stroke\nshowpage\n")
    for read in (read_header, read_image):
        with pytest.raises(ImageReadError, match=r"not a photo ppjax reads \(a PostScript file\): it reads JPEG, PNG, HEIC/HEIF, WebP, TIFF"):
            read(eps)
    assert peek_size(eps) is None
    assert not fake_ghostscript.exists()


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX"])
def test_formats_ppjax_does_not_name_are_refused(tmp_path, fmt):
    path = tmp_path / f"picture.{fmt.lower()}"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path, fmt)
    assert Image.open(path).format == fmt  # Pillow itself would decode it
    with pytest.raises(ImageReadError, match="not a photo ppjax reads"):
        read_image(path)


def test_truncated_photo_gets_one_line_naming_it(tmp_path):
    path = tmp_path / "cut.png"
    full = _png(64, 64, after_idat=b"")
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageReadError) as e:
        read_image(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
