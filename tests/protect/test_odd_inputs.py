"""Any image Pillow decodes, at any size from 1x1 up, through `protect` and `classify`: processed,
or one clean error line, and the batch goes on. Property-based (hypothesis) over sizes, modes, bit
depths, formats, EXIF orientations and ICC tags; then the issue's own cases through the commands."""

from __future__ import annotations

import io
import json
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageCms

from ppjax import attacks
from ppjax.io import ImageReadError, read_image
from ppjax.models import Model, ModelSpec
from ppjax.predict.classify import classify_files
from ppjax.protect import Protector, protect_files

from ..attack_models import TinyNet

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# (mode, formats that can store it)
MODES = [
    ("1", ["PNG", "BMP", "TIFF"]),
    ("L", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"]),
    ("LA", ["PNG", "TIFF"]),
    ("P", ["PNG", "GIF", "BMP", "TIFF"]),
    ("RGB", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"]),
    ("RGBA", ["PNG", "TIFF", "WEBP"]),
    ("I;16", ["PNG", "TIFF"]),
    ("I", ["TIFF"]),
    ("F", ["TIFF"]),
    ("CMYK", ["JPEG", "TIFF"]),
]
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@st.composite
def image_files(draw):
    """(bytes, suffix, (width, height) after the EXIF orientation) of one image file."""
    mode, formats = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(formats))
    # A few sides, so that shapes (each one compiled) repeat: 1 and 3 (below SSIM's 11x11 window),
    # 11 (its edge), 16, and 300 for strips.
    w = draw(st.sampled_from([1, 3, 11, 16, 300]))
    h = draw(st.sampled_from([1, 3, 11, 16]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if mode in ("I;16", "I"):
        top = 65535 if mode == "I;16" else 2**20
        img = Image.fromarray(rng.integers(0, top, (h, w)).astype(np.uint16 if mode == "I;16" else np.int32))
    elif mode == "F":
        img = Image.fromarray(rng.random((h, w)).astype(np.float32), "F")
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").convert(mode)
    options = {}
    orientation = draw(st.integers(1, 8)) if fmt in ("JPEG", "PNG", "TIFF", "WEBP") else 1
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    if mode == "RGB" and fmt in ("JPEG", "PNG", "TIFF", "WEBP") and draw(st.booleans()):
        options["icc_profile"] = SRGB_ICC
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return buf.getvalue(), SUFFIX[fmt], size


@pytest.fixture(scope="module")
def tiny_model():
    module = TinyNet()
    variables = module.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)))
    spec = ModelSpec("tiny", "a generated 10-class network", 10, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return Model(spec, module.apply, variables, tuple(f"class {i}" for i in range(10)))


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=st.lists(image_files(), min_size=1, max_size=3))
def test_any_decodable_image_is_protected_or_reported(tmp_path_factory, tiny_model, files):
    tmp = tmp_path_factory.mktemp("odd")
    jobs = []
    for n, (data, suffix, _size) in enumerate(files):
        src = tmp / "in" / f"{n}{suffix}"
        src.parent.mkdir(exist_ok=True)
        src.write_bytes(data)
        jobs.append((src, tmp / "out" / f"{n}.png"))
    protector = Protector([attacks.Target(tiny_model.apply, tiny_model.variables, attacks.cross_entropy())], method="bim", eps=2.0, steps=2)
    old = os.umask(0o022)
    try:
        results = protect_files(protector, jobs, max_batch=2)
    finally:
        os.umask(old)
    assert [r.source for r in results] == [src for src, _ in jobs]
    for r, (_, _, size) in zip(results, files):
        if r.error:
            assert r.error.startswith(str(r.source)) and "\n" not in r.error
            continue
        out = Image.open(r.output)
        assert out.size == size  # the EXIF orientation applied, the photo's size kept
        assert stat.S_IMODE(r.output.stat().st_mode) == 0o644  # a normal file under umask 022
        assert r.psnr is not None and (r.ssim is None) == (min(size) < 11)
    predictions = list(classify_files(tiny_model, [src for src, _ in jobs], top_k=3, max_batch=2))
    assert len(predictions) == len(jobs)
    for p, (src, _) in zip(predictions, jobs):
        assert isinstance(p, ImageReadError) and str(p).startswith(str(src)) or len(p.top) == 3


@pytest.fixture
def places_installed(store, official_checkpoint):
    import ppjax.store as model_store

    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories)
    return store


@pytest.mark.slow
def test_the_issue_cases_through_the_commands(places_installed, places_samples, tmp_path):
    """A 1x1 and a 3x2000 PNG beside a real photo: `ppjax protect` writes all three (the summary
    printed, SSIM absent where it cannot be computed), `ppjax classify` classifies all three.
    The exact channel, to keep CI short (the social channel compiles its programs for each of the
    three sizes, minutes on 2 cores): the social path takes these sizes in
    tests/protect/test_channel_protect.py."""
    from typer.testing import CliRunner

    from ppjax.cli import app

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(folder / "dot.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (2000, 3, 3), dtype=np.uint8)).save(folder / "strip.png")
    (folder / "photo.jpg").write_bytes(places_samples[0][0].read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = CliRunner().invoke(app, ["protect", "--channel", "exact", "--steps", "2", "-o", str(tmp_path / "out"), str(folder)])
    assert "Traceback" not in result.output
    assert result.exit_code == 1  # one input failed: broken.png
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert "images as written" in result.stdout and "/3 images as written" in result.stdout
    for name, size in (("dot.png", (1, 1)), ("strip.png", (3, 2000)), ("photo.jpg", read_image(folder / "photo.jpg").size[::-1])):
        assert Image.open(tmp_path / "out" / name).size == size  # each in its own kind (--format auto)
    result = CliRunner().invoke(app, ["classify", "--json", str(folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert sorted(json.loads(line)["file"].rsplit("/", 1)[1] for line in result.stdout.splitlines()) == ["dot.png", "photo.jpg", "strip.png"]
