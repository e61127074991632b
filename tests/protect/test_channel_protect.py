"""Protection through the social channel: no classifier at full size, full-resolution photos end
to end judged through the real channel, and the configuration's rules."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from PIL import Image

from ppjax import attacks
from ppjax.protect import Protector
from ppjax.protect.config import ProtectConfig
from ppjax.protect.pixel_run import run_pixel

from ..attack_models import TinyNet
from ..conftest import shared_path


def _recording_target(shapes: list):
    module = TinyNet()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))

    def apply(v, x):
        shapes.append(tuple(x.shape))  # at trace time: every shape a classifier is called with
        return module.apply(v, x)

    return attacks.Target(apply, variables, attacks.cross_entropy())


@pytest.mark.slow
def test_a_12_megapixel_photo_never_reaches_a_classifier_at_full_size(tmp_path):
    """A 4032x3024 photo through protect_files: attack, rounds and the real-channel verdict call the
    classifier at 224x224 only, and the output keeps the photo's size."""
    from ppjax.protect import protect_files

    shapes: list = []
    rgb = np.asarray(Image.open(sorted(shared_path("fullres").glob("*.jpg"))[1]).convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC))
    Image.fromarray(rgb).save(tmp_path / "12mp.png")
    p = Protector([_recording_target(shapes)], method="pgd", eps=4.0, steps=2, channel="social")
    (result,) = protect_files(p, [(tmp_path / "12mp.png", tmp_path / "out.png")], channel_rounds=1)
    assert result.error is None and result.variants == 36
    assert Image.open(tmp_path / "out.png").size == (4032, 3024)
    assert shapes, "the classifier was never called"
    assert {s[1:] for s in shapes} == {(224, 224, 3)}, sorted(set(shapes))


def _trace(p, shape):
    """Trace the protector's program for ``shape`` photos on their canvas (nothing compiles)."""
    n, h, w = shape[:3]
    if p.channel == "exact":
        keys = jax.ShapeDtypeStruct((n,), jax.random.key(0).dtype)
        x = jax.ShapeDtypeStruct(shape, jnp.float32)
        return jax.eval_shape(functools.partial(run_pixel, p), p._variables, keys, x, None, x, 3, 3)
    canvas = p.canvas_for(h, w)
    x, geometry = p.layout(canvas, [np.zeros(shape[1:], np.uint8)] * n)
    keys = jax.ShapeDtypeStruct((n,), jax.random.key(0).dtype)
    xs = jax.ShapeDtypeStruct(x.shape, jnp.float32)
    return canvas, jax.eval_shape(lambda *a: run_pixel(p, *a, exact=canvas.exact), p._variables, keys, xs, geometry, xs, 3, 3)


def test_small_photos_are_also_seen_whole_and_exact_channel_sees_only_the_image():
    shapes: list = []
    p = Protector([_recording_target(shapes)], method="pgd", eps=4.0, steps=3, channel="social")
    canvas, out = _trace(p, (2, 299, 299, 3))
    assert canvas.shape == (320, 320) and out[0].shape == (2, 320, 320, 3)
    # Views at 224, and the photos whole on their canvas (masked to each photo's own extent).
    assert {s[1:3] for s in shapes} >= {(224, 224), (320, 320)} and {s[1:3] for s in shapes} <= {(224, 224), (320, 320), (299, 299)}
    shapes.clear()
    p = Protector([_recording_target(shapes)], method="pgd", eps=4.0, steps=3, channel="exact")
    _trace(p, (2, 299, 299, 3))
    assert {s[1:3] for s in shapes} == {(299, 299)}


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (1, 2000, 3, 3), (2, 13, 1201, 3)])
def test_odd_sizes_trace_through_the_social_channel(shape):
    """A dot, a strip, and a thin wide image through every part of the social attack: JPEG padding,
    upscaling views, the centre crop; traced, not compiled (the channel is traced once per use,
    so this takes a few seconds)."""
    shapes: list = []
    p = Protector([_recording_target(shapes)], method="pgd", eps=4.0, steps=2, channel="social")
    canvas, out = _trace(p, shape)
    assert out[0].shape == (shape[0], *canvas.shape, 3)
    seen = {s[1:3] for s in shapes} - {shape[1:3]}  # the extents are found by tracing the photo alone
    assert seen == ({(224, 224), canvas.shape} if canvas.exact else {(224, 224)})


def test_channel_choices_are_checked(tmp_path):
    with pytest.raises(ValueError, match="channel"):
        ProtectConfig((tmp_path,), tmp_path / "out", method="cw")  # its own loop: no channel
    assert ProtectConfig((tmp_path,), tmp_path / "out", method="cw", channel="exact").channel.value == "exact"
    with pytest.raises(ValueError, match="channel"):
        ProtectConfig((tmp_path,), tmp_path / "out", channel="lab")
    with pytest.raises(ValueError, match="channel"):
        Protector([_recording_target([])], channel="lab")
    with pytest.raises(ValueError, match="channel"):
        attacks.build("pfgsm", [_recording_target([])], channel=lambda k, s, x: (x,))


@pytest.mark.slow
def test_channel_attack_is_deterministic_and_within_budget(tiny, photos):
    p = Protector([tiny], method="pgd", eps=3.0, steps=3, channel="social")
    x = jnp.asarray(photos[:2], jnp.float32) / 255.0
    keys = jax.random.split(jax.random.key(5), 2)
    a, _, _ = p(keys, x)
    b, _, _ = p(keys, x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.rint(a * 255) - np.rint(np.asarray(x) * 255)).max() <= 3


@pytest.mark.slow
def test_full_resolution_photo_end_to_end(tmp_path, lite0_store):
    """A shared 2560x1600 photograph protected against the real EfficientNet-Lite0; the written file
    keeps its size and budget, and decoded and passed through Pillow's real channel (the demo's
    256 + centre 224 and a direct resize to 224, as written and after JPEG q90 and q75) it no
    longer gets the original's class from ONNX Runtime on the graph from PyTorch."""
    import ppjax.store as model_store
    from ppjax.evaluate.engines import OnnxClassifier
    from ppjax.io.real_channel import apply_real
    from ppjax.ops.channel import Variant
    from ppjax.protect import protect_files

    root, model = lite0_store
    source = sorted(shared_path("fullres").glob("*.jpg"))[0]
    out = tmp_path / "out.png"
    p = Protector([attacks.Target(model.apply, model.variables, attacks.cross_entropy())], method="pgd", eps=4.0, steps=20, channel="social")
    (result,) = protect_files(p, [(source, out)])
    assert result.error is None and result.variants == 36
    original = np.asarray(Image.open(source).convert("RGB"))
    written = np.asarray(Image.open(out).convert("RGB"))
    assert written.shape == original.shape == (1600, 2560, 3)
    assert np.abs(written.astype(int) - original).max() <= 4 and result.psnr >= 38.0
    judge = OnnxClassifier(model_store.model_dir("efficientnet-lite0", root) / model_store.ONNX).logits
    for view in ("demo", "direct"):
        for quality in (None, 90, 75):
            v = Variant(view, "bilinear", quality)
            before = judge(apply_real(original, v)[None] / np.float32(255)).argmax()
            after = judge(apply_real(written, v)[None] / np.float32(255)).argmax()
            assert before != after, v.label()
