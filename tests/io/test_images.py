"""Image reading and writing on generated files of every kind the issue names."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path, PurePath

import numpy as np
import pytest
from PIL import Image, ImageCms

from ppjax.io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageWriteError,
    iter_image_files,
    read_image,
    resize_shorter_side,
    to_float01,
    to_uint8,
    write_image,
)

RNG = np.random.default_rng(0)
_yy, _xx = np.mgrid[0:12, 0:16]
# Smooth content (as photos are) plus mild noise: JPEG must be able to keep it close.
PIXELS = np.clip(
    np.stack([_xx * 15, _yy * 20, 255 - _xx * 8 - _yy * 6], -1) + RNG.integers(-6, 7, (12, 16, 3)), 0, 255
).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_rgb16(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG, encoded by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds no pixel data (what a decompression bomb looks like up front)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")


def icc_swapped_red_blue() -> bytes:
    """A minimal ICC v2 RGB display profile whose red and blue primaries are sRGB's blue and red."""
    s15 = lambda v: struct.pack(">i", round(v * 65536))  # noqa: E731
    xyz = lambda x, y, z: b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)  # noqa: E731
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags = [
        (b"rXYZ", xyz(0.1430804, 0.0606169, 0.7141733)),  # sRGB blue (D50)
        (b"gXYZ", xyz(0.3850649, 0.7168786, 0.0971045)),
        (b"bXYZ", xyz(0.4360747, 0.2225045, 0.0139322)),  # sRGB red (D50)
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (
        struct.pack(">I", size) + b"none" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
        + b"\0" * 12 + b"acsp" + b"\0" * 24 + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48
    )  # fmt: skip
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def _save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    img.save(path, format=fmt, **kw)
    return path


@pytest.mark.parametrize(
    "suffix, fmt, kw, lossless",
    [
        (".png", "PNG", {}, True),
        (".bmp", "BMP", {}, True),
        (".tif", "TIFF", {}, True),
        (".webp", "WEBP", {"lossless": True}, True),
        (".jpg", "JPEG", {"quality": 95, "subsampling": 0}, False),
    ],
)
def test_reads_common_formats(tmp_path, suffix, fmt, kw, lossless):
    path = _save(Image.fromarray(PIXELS), tmp_path / f"a{suffix}", fmt, **kw)
    img = read_image(path)
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == PIXELS.shape and img.alpha is None
    assert img.format == fmt
    err = np.abs(img.rgb.astype(int) - PIXELS).mean()
    assert err == 0 if lossless else err < 3


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)).quantize(4) for v in (10, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert (np.abs(read_image(path).rgb.astype(int) - 10) <= 2).all()


def test_grayscale_and_16bit(tmp_path):
    gray = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    img = read_image(_save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    assert (img.rgb == gray[..., None]).all()

    g16 = RNG.integers(0, 65536, (6, 5)).astype(np.uint16)
    img = read_image(_save(Image.fromarray(g16), tmp_path / "g16.png"))
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert np.abs(img.rgb[..., 0].astype(int) - np.rint(g16 / 257)).max() <= 1
    assert (img.rgb[..., 0] == img.rgb[..., 2]).all()

    rgb16 = RNG.integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    (tmp_path / "c16.png").write_bytes(png_rgb16(rgb16))
    assert np.abs(read_image(tmp_path / "c16.png").rgb.astype(int) - rgb16 / 257).max() <= 1


def test_palette_rgba_and_alpha_round_trip(tmp_path):
    pal = Image.fromarray(PIXELS).quantize(16)
    img = read_image(_save(pal, tmp_path / "p.png"))
    assert (img.rgb == np.asarray(pal.convert("RGB"))).all() and img.alpha is None

    alpha = RNG.integers(0, 256, PIXELS.shape[:2], dtype=np.uint8)
    rgba = np.dstack([PIXELS, alpha])
    img = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert (img.rgb == PIXELS).all() and (img.alpha == alpha).all()
    out = write_image(tmp_path / "out.png", img.rgb, img.alpha)
    assert (np.asarray(Image.open(out)) == rgba).all()

    ptrans = pal.copy()
    ptrans.info["transparency"] = 0
    img = read_image(_save(ptrans, tmp_path / "pt.png", transparency=0))
    assert img.alpha is not None and set(np.unique(img.alpha)) <= {0, 255} and (img.alpha == 0).any()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    rgb = read_image(_save(cyan, tmp_path / "c.jpg", "JPEG", quality=95)).rgb
    r, g, b = rgb.reshape(-1, 3).mean(0)
    assert r < 40 and g > 200 and b > 200


def test_icc_profile_is_converted_to_srgb(tmp_path):
    icc = icc_swapped_red_blue()
    ImageCms.ImageCmsProfile(io.BytesIO(icc))  # the hand-built profile is valid for LittleCMS
    red_in_file = Image.new("RGB", (4, 4), (200, 0, 0))
    for name, fmt in (("i.png", "PNG"), ("i.jpg", "JPEG"), ("i.tif", "TIFF")):
        rgb = read_image(_save(red_in_file, tmp_path / name, fmt, icc_profile=icc)).rgb
        r, g, b = rgb.reshape(-1, 3).mean(0)
        assert b > 150 and r < 40, (name, r, g, b)  # it was blue all along


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:4, :4] = (255, 0, 0)  # red block in the top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    for name, fmt in (("o.jpg", "JPEG"), ("o.png", "PNG")):
        path = _save(Image.fromarray(arr), tmp_path / name, fmt, exif=exif.tobytes())
        rgb = read_image(path).rgb.astype(int)
        assert rgb.shape[:2] == (16, 8)
        assert rgb[1, 6, 0] > 200 and rgb[1, 1, 0] < 60, name  # top-left moved to top-right


def test_written_files_carry_no_metadata(tmp_path):
    exif = Image.Exif()
    gps = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x8825] = gps
    exif[0x010F] = "CameraMaker"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-location</x:xmpmeta>'
    src = _save(Image.fromarray(PIXELS), tmp_path / "src.jpg", "JPEG", exif=exif.tobytes(), xmp=xmp, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert Image.open(src).getexif().get_ifd(0x8825)
    img = read_image(src)
    for name in ("out.png", "out.jpg"):
        out = write_image(tmp_path / name, img.rgb, jpeg_quality=90)
        data = out.read_bytes()
        reopened = Image.open(out)
        assert not reopened.getexif() and "exif" not in reopened.info and "icc_profile" not in reopened.info
        assert b"CameraMaker" not in data and b"secret-location" not in data and b"Exif" not in data


def test_kept_metadata_has_no_location_no_maker_notes_and_no_orientation(tmp_path):
    """Asked to keep metadata, the photo's EXIF comes back without its GPS block, its maker notes
    (opaque; some hold a location) and its orientation (already applied to the pixels)."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "CameraMaker", "Model X", 6
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0x927C] = "2026:12:01 10:00:00", b"maker secret"
    src = _save(Image.fromarray(PIXELS), tmp_path / "src.jpg", "JPEG", exif=exif.tobytes())
    img = read_image(src)
    assert img.size == PIXELS.shape[1::-1]  # turned upright
    for name in ("kept.jpg", "kept.png"):
        out = write_image(tmp_path / name, img.rgb, exif=img.exif)
        kept = Image.open(out)
        kept.load()
        found = kept.getexif()
        assert (found.get(0x010F), found.get(0x0110)) == ("CameraMaker", "Model X"), name
        assert not found.get_ifd(0x8825) and 0x0112 not in found, name
        assert b"maker secret" not in out.read_bytes() and b"48" not in bytes(str(dict(found.get_ifd(0x8825))), "ascii")
    assert found.get_ifd(0x8769).get(0x9003) == "2026:12:01 10:00:00" or name.endswith(".png")


def test_reads_heic_from_an_iphone(tmp_path):
    """HEIC (the iPhone's default) is read through pillow-heif, oriented like any photo."""
    pytest.importorskip("pillow_heif")
    photo = np.asarray(Image.fromarray(PIXELS).resize((96, 64)))
    path = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(photo).save(path, format="HEIF", quality=95)
    img = read_image(path)
    assert img.format == "HEIF" and img.size == (64, 96)
    assert np.abs(img.rgb.astype(int) - photo).mean() < 6  # lossy, but the photo
    from ppjax.io import iter_image_files

    assert [f.name for f, _ in iter_image_files([tmp_path])] == ["IMG_0001.HEIC"]


def test_write_is_atomic_and_never_overwrites_inputs(tmp_path, monkeypatch):
    src = _save(Image.fromarray(PIXELS), tmp_path / "in.png")
    before = src.read_bytes()
    with pytest.raises(ImageWriteError, match="refusing to overwrite an input"):
        write_image(src, PIXELS, sources=[src])
    link = tmp_path / "alias.png"
    link.symlink_to(src)
    with pytest.raises(ImageWriteError, match="refusing"):
        write_image(link, PIXELS, sources=[src])
    assert src.read_bytes() == before

    dest = tmp_path / "sub" / "out.png"
    write_image(dest, PIXELS)
    good = dest.read_bytes()

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageWriteError, match="No space left"):
        write_image(dest, 255 - PIXELS)
    assert dest.read_bytes() == good  # the old file is intact, no partial write under its name
    assert [p.name for p in dest.parent.iterdir()] == ["out.png"]  # no temporary file left behind


def test_write_rejects_bad_arguments(tmp_path):
    with pytest.raises(ImageWriteError, match="unsupported output format"):
        write_image(tmp_path / "x.gif", PIXELS)
    with pytest.raises(ImageWriteError, match="uint8"):
        write_image(tmp_path / "x.png", PIXELS.astype(np.float32))
    with pytest.raises(ImageWriteError, match="quality"):
        write_image(tmp_path / "x.jpg", PIXELS, jpeg_quality=0)


def test_jpeg_quality_option(tmp_path):
    smooth = np.asarray(Image.fromarray(PIXELS).resize((64, 48)))
    low = write_image(tmp_path / "q10.jpg", smooth, jpeg_quality=10).stat().st_size
    high = write_image(tmp_path / "q95.jpg", smooth, jpeg_quality=95).stat().st_size
    assert low < high


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("just some notes, not a picture"), "not a photo ppjax reads: it reads JPEG, PNG"),
        (lambda p: p.write_bytes(_jpeg_bytes()[:400]), "truncated"),
        (lambda p: p.write_bytes(png_header_only(10_000, 8_500)), "exceeds the limit of 80,000,000 pixels"),
        (lambda p: p.write_bytes(png_header_only(20_000, 20_000)), "20000x20000 image (400.0 megapixels) exceeds the limit of 80,000,000 pixels"),
    ],
    ids=["zero-bytes", "not-an-image", "truncated", "bomb-above-ppjax-limit", "bomb-above-pillow-limit"],
)
def test_bad_inputs_give_one_clear_line(tmp_path, make, reason):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageReadError) as e:
        read_image(path)
    message = str(e.value)
    assert str(path) in message and reason in message and "\n" not in message


def test_unreadable_paths(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_pixel_limit_is_configurable(tmp_path):
    path = _save(Image.fromarray(PIXELS), tmp_path / "a.png")
    with pytest.raises(ImageReadError, match="exceeds the limit of 100 pixels"):
        read_image(path, max_pixels=100)
    assert DEFAULT_MAX_PIXELS == 80_000_000


def _jpeg_bytes() -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.asarray(Image.fromarray(PIXELS).resize((160, 120)))).save(b, "JPEG", quality=90)
    return b.getvalue()


def test_iter_image_files(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / ".hidden").mkdir()
    for rel in ("d/b.JPG", "d/a.png", "d/sub/c.webp", "d/notes.txt", "d/.hidden/x.png", "d/.y.png"):
        (tmp_path / rel).write_bytes(b"x")
    single = tmp_path / "d" / "notes.txt"
    found = [(str(f.relative_to(tmp_path)), str(r)) for f, r in iter_image_files([tmp_path / "d", single])]
    assert found == [("d/a.png", "a.png"), ("d/b.JPG", "b.JPG"), ("d/sub/c.webp", "sub/c.webp"), ("d/notes.txt", "notes.txt")]


def test_float_conversions_round_trip():
    x = to_float01(PIXELS)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert (to_uint8(x) == PIXELS).all()
    assert (to_uint8(np.array([-0.2, 0.4 / 255, 0.6 / 255, 1.7])) == [0, 0, 1, 255]).all()


def test_resize_shorter_side():
    out = resize_shorter_side(PIXELS, 6)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert resize_shorter_side(PIXELS, 12) is PIXELS


def test_read_does_not_follow_into_permissions_it_lacks(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of permissions")
    path = _save(Image.fromarray(PIXELS), tmp_path / "locked.png")
    path.chmod(0)
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(path)


def test_written_files_get_the_umasks_permissions(tmp_path):
    """Atomic writes go through a 0600 temporary file; the result must be what a plain write gives."""
    import os
    import stat

    rgb = np.zeros((4, 4, 3), np.uint8)
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            for suffix in (".png", ".jpg"):
                out = write_image(tmp_path / f"{mask:o}{suffix}", rgb)
                assert stat.S_IMODE(out.stat().st_mode) == mode
        finally:
            os.umask(old)


def test_iter_image_files_skips_the_output_folder_inside_an_input(tmp_path):
    """``ppjax protect Photos -o Photos/protected``, run again: the protected copies are not new
    photos (they would be protected again, into Photos/protected/protected, and so on)."""
    from ppjax.protect.config import ProtectConfig
    from ppjax.protect.runner import plan

    photos = tmp_path / "Photos"
    (photos / "protected" / "trip").mkdir(parents=True)
    (photos / "trip").mkdir()
    for rel in ("a.png", "trip/b.jpg", "protected/a.jpg", "protected/trip/b.jpg"):
        (photos / rel).write_bytes(b"x")
    assert [str(r) for _, r in iter_image_files([photos], skip=photos / "protected")] == ["a.png", "trip/b.jpg"]
    assert len(list(iter_image_files([photos]))) == 4  # only the output folder is left out
    # Named through another path, and the output folder named as an input itself: still its own.
    assert [str(r) for _, r in iter_image_files([photos], skip=tmp_path / "Photos" / ".." / "Photos" / "protected")] == ["a.png", "trip/b.jpg"]
    assert len(list(iter_image_files([photos / "protected"], skip=photos / "protected"))) == 2
    jobs = plan(ProtectConfig((photos,), photos / "protected", models=("efficientnet-lite0",))).jobs
    assert [(src.relative_to(photos).as_posix(), out.relative_to(photos).as_posix()) for src, out in jobs] == [
        ("a.png", "protected/a.png"), ("trip/b.jpg", "protected/trip/b.jpg"),
    ]  # fmt: skip


def test_files_left_out_of_a_folder_are_named_and_protect_says_so(tmp_path):
    """A phone folder holds videos and RAW files beside its photos: they are not protected, and the
    person hears which, before the run (and when nothing else is there, instead of a bare error)."""
    from typer.testing import CliRunner

    from ppjax.cli import app

    folder = tmp_path / "DCIM"
    (folder / "trip").mkdir(parents=True)
    for rel in ("IMG_1.jpg", "IMG_1.MOV", "trip/RAW_2.dng", ".thumbs.db", "trip/IMG_3.HEIC"):
        (folder / rel).write_bytes(b"x")
    left: list = []
    taken = [r.as_posix() for _, r in iter_image_files([folder], left_out=left)]
    assert taken == ["IMG_1.jpg", "trip/IMG_3.HEIC"]
    assert sorted(p.relative_to(folder).as_posix() for p in left) == ["IMG_1.MOV", "trip/RAW_2.dng"]  # hidden files are not news

    (folder / "IMG_1.jpg").unlink()
    (folder / "trip" / "IMG_3.HEIC").unlink()
    result = CliRunner().invoke(app, ["protect", str(folder), "-o", str(tmp_path / "out"), "--model", "efficientnet-lite0"])
    assert result.exit_code == 2
    assert "left out 2 files" in result.stderr and "IMG_1.MOV" in result.stderr and "RAW_2.dng" in result.stderr
    assert "no image files found" in result.stderr


def test_an_output_folder_that_is_an_input_folder_is_refused_once(tmp_path):
    """`ppjax protect Photos -o Photos`: one clear refusal before any work, not an error per photo."""
    from typer.testing import CliRunner

    from ppjax.cli import app

    photos = tmp_path / "Photos"
    photos.mkdir()
    for name in ("a.jpg", "b.png"):
        (photos / name).write_bytes(b"x")
    result = CliRunner().invoke(app, ["protect", str(photos), "-o", str(tmp_path / "Photos" / "." ), "--model", "efficientnet-lite0"])
    assert result.exit_code == 2
    assert "is the input folder" in result.stderr and "protected" in result.stderr
    assert result.stderr.count("error") == 1
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "b.png"]


def test_capture_dates_in_names_are_found_and_private_names_hide_them(tmp_path, monkeypatch):
    """Phones write the date and time a photo was taken into its name; --private-names names each
    output by a keyed digest instead: stable on this computer, flat in the output folder, and the
    manifest is told to record no input name."""
    from ppjax.io.naming import names_with_capture_time, private_name
    from ppjax.protect.config import ProtectConfig
    from ppjax.protect.runner import plan

    dated = ["IMG_20261205_143012.jpg", "PXL_20261205_143012345.jpg", "20261205_143012.jpg", "IMG-20261205-WA0001.jpg",
             "Screenshot 2026-12-05 at 14.30.12.png"]  # fmt: skip
    plain = ["IMG_1234.HEIC", "DSC01234.JPG", "photo-e17ebc6379a2.png", "001b5e6f1b89fd3b.png", "Places365_val_00000001.jpg", "DSC_2019.jpg", "20261305_1.jpg"]
    assert names_with_capture_time(dated + plain) == dated

    monkeypatch.setenv("PPJAX_HOME", str(tmp_path / "home"))
    photos = tmp_path / "Photos"
    (photos / "hospital").mkdir(parents=True)
    for rel in ("IMG_20261205_143012.jpg", "hospital/IMG_20261205_143012.jpg", "hospital/b.png"):
        (photos / rel).write_bytes(b"x")
    config = ProtectConfig((photos,), tmp_path / "out", models=("efficientnet-lite0",), private_names=True)
    jobs = plan(config).jobs
    names = [out.relative_to(tmp_path / "out").as_posix() for _, out in jobs]
    assert all(re.fullmatch(r"photo-[0-9a-f]{12}\.(jpg|png)", n) for n in names) and len(set(names)) == 3
    assert names == [out.relative_to(tmp_path / "out").as_posix() for _, out in plan(config).jobs]  # every run
    assert private_name(PurePath("a.jpg"), bytes(32)) != private_name(PurePath("a.jpg"), bytes([1]) * 32)


def test_looks_apply_never_writes_over_its_inputs(tmp_path):
    """`ppjax looks apply` writes PNGs: `-o` on the input folder used to write each PNG input's look
    over the original itself."""
    from typer.testing import CliRunner

    from ppjax.cli import app

    photos = tmp_path / "Photos"
    photos.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(photos / "a.png")
    (photos / "clip.mov").write_bytes(b"x")
    before = (photos / "a.png").read_bytes()
    folder = CliRunner().invoke(app, ["looks", "apply", "warm", str(photos), "-o", str(photos)])
    assert folder.exit_code == 2 and "is the input folder" in folder.stderr
    named = CliRunner().invoke(app, ["looks", "apply", "warm", str(photos / "a.png"), "-o", str(photos)])
    assert named.exit_code == 1 and "refusing to overwrite an input" in named.stderr
    assert (photos / "a.png").read_bytes() == before
    elsewhere = CliRunner().invoke(app, ["looks", "apply", "warm", str(photos), "-o", str(tmp_path / "out")])
    assert elsewhere.exit_code == 0 and "left out 1 file" in elsewhere.stderr and (tmp_path / "out" / "a.png").is_file()
