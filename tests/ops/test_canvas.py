"""Canvases: the resampling with its maps as arguments equals Pillow's and today's resize on real
photos of many sizes; the JPEG, the input diversity and every model family give on a canvas what
they give on the photo alone; the canvases each size goes to."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ppjax.io.real_channel import apply_real
from ppjax.ops.bands import VIEW_PAIRS, apply_bands, resize_view, shift_scale_bands, stack_bands, view_bands, taps_needed
from ppjax.ops.canvas import CANVASES, SHRUNK_CANVAS, Canvas, canvas_for, geometry, own_canvas, place, stack_geometry
from ppjax.ops.channel import Variant
from ppjax.ops.jpeg import jpeg_round_trip
from ppjax.ops.resample import center_crop, resize

from ..conftest import shared_path

#: (height, width) of real photos cut to odd sizes: upscaled, shrunk, both, a strip, one of each
#: canvas's own side.
SIZES = ((299, 299), (37, 53), (256, 256), (224, 300), (810, 1080), (1080, 608), (1, 3), (500, 41))


def _photo(h: int, w: int) -> np.ndarray:
    src = sorted(shared_path("fullres").glob("*.jpg"))[2]
    return np.asarray(Image.open(src).convert("RGB").resize((w, h), Image.Resampling.BICUBIC))


def _batch(rgb: np.ndarray, canvas) -> tuple[jnp.ndarray, object]:
    """One photo on ``canvas``, the padding filled with noise (it must never matter)."""
    h, w = rgb.shape[:2]
    x = place([rgb], canvas).astype(np.float32) / 255.0
    noise = np.random.default_rng(0).uniform(size=x.shape).astype(np.float32)
    inside = np.zeros(x.shape[:3] + (1,), bool)
    inside[:, :h, :w] = True
    return jnp.asarray(np.where(inside, x, noise)), stack_geometry([geometry(canvas, h, w)])


@pytest.mark.slow
@pytest.mark.parametrize("h,w", SIZES)
def test_views_with_maps_as_arguments_are_pillows(h, w):
    """Each of the four views of a photo on its canvas equals today's differentiable resize (and
    centre crop) of the photo alone, with its gradient, and so Pillow's (as that one does: within a
    grey level on a few values, where Pillow's integer sums round the other way)."""
    rgb = _photo(h, w)
    canvas = canvas_for(h, w)
    x, g = _batch(rgb, canvas)
    alone = jnp.asarray(rgb[None], jnp.float32) / 255.0
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=(1, 224, 224, 3)), jnp.float32)
    for v, (view, filt) in enumerate(VIEW_PAIRS):
        ours = np.rint(np.asarray(resize_view(x, g.rows, g.cols, v))[0] * 255).astype(int)

        def today(a, view=view, filt=filt):
            return center_crop(resize(a, (256, 256), filt), (224, 224)) if view == "demo" else resize(a, (224, 224), filt)

        before = np.rint(np.asarray(today(alone))[0] * 255).astype(int)
        # A value on a rounding boundary after the first pass, where another compiled float order
        # lands it the other way; the second pass can carry that to two grey levels. Measured: at
        # most 0.4% of values (256 -> 224 bicubic, a scale with many exact halves), and no further
        # from Pillow than before.
        assert np.abs(ours - before).max() <= 2 and (ours != before).mean() < 5e-3, (view, filt)
        if w >= h:
            # Taller photos: Pillow 13 runs some of their resizes vertical pass first, and both
            # ours and today's differ from it by a grey level on up to 14% of values (found while
            # building this; not changed here).
            real = apply_real(rgb, Variant(view, filt)).astype(int)
            assert np.abs(ours - real).max() <= 2 and (ours != real).mean() < 5e-3, (view, filt)

        grad = jax.grad(lambda a: jnp.sum(resize_view(a, g.rows, g.cols, v) * cotangent))(x)
        reference = jax.grad(lambda a: jnp.sum(today(a) * cotangent))(alone)
        np.testing.assert_allclose(np.asarray(grad)[0, :h, :w], np.asarray(reference)[0], atol=1e-4)
        assert not np.asarray(grad)[0, h:].any() and not np.asarray(grad)[0, :, w:].any()  # the padding is never read


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(37, 53), (299, 299), (810, 1080), (1, 3)])
def test_jpeg_on_a_canvas_is_the_photos_own(h, w):
    rgb = _photo(h, w)
    x, g = _batch(rgb, canvas_for(h, w))
    alone = jnp.asarray(rgb[None], jnp.float32) / 255.0
    q = jnp.array([83])
    on_canvas = jax.jit(lambda a: jpeg_round_trip(a, q, "4:2:0", g.valid))
    own = jax.jit(lambda a: jpeg_round_trip(a, 83, "4:2:0"))
    np.testing.assert_array_equal(np.asarray(on_canvas(x))[:, :h, :w], np.asarray(own(alone)))
    cotangent = jnp.asarray(np.random.default_rng(2).normal(size=(1, h, w, 3)), jnp.float32)
    grad = jax.jit(jax.grad(lambda a: jnp.sum(on_canvas(a)[:, :h, :w] * cotangent)))(x)
    reference = jax.jit(jax.grad(lambda a: jnp.sum(own(a) * cotangent)))(alone)
    np.testing.assert_allclose(np.asarray(grad)[:, :h, :w], np.asarray(reference), atol=1e-4)
    assert not np.asarray(grad)[0, h:].any() and not np.asarray(grad)[0, :, w:].any()


@pytest.mark.slow
def test_input_diversity_on_a_canvas_is_jax_image_on_the_photo():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(size=(2, 40, 48, 3)), jnp.float32)
    s, ty, tx = jnp.array([0.85, 0.93]), jnp.array([3.3, 1.2]), jnp.array([0.5, 2.9])
    reference = jax.vmap(
        lambda im, s, ty, tx: jax.image.scale_and_translate(im, im.shape, (0, 1), jnp.stack([s, s]), jnp.stack([ty, tx]), "linear", antialias=True)
    )(x, s, ty, tx)
    canvas = jnp.zeros((2, 64, 64, 3)).at[:, :40, :48].set(x)
    rows, cols = shift_scale_bands(jnp.array([40, 40]), 64, s, ty), shift_scale_bands(jnp.array([48, 48]), 64, s, tx)
    ours = apply_bands(apply_bands(canvas, *cols, axis=2), *rows, axis=1)
    np.testing.assert_allclose(np.asarray(ours)[:, :40, :48], np.asarray(reference), atol=1e-5)
    # The gradient through the transposed maps equals autodiff's (a scatter).
    cotangent = jnp.asarray(rng.normal(size=(2, 64, 64, 3)), jnp.float32).at[:, 40:].set(0).at[:, :, 48:].set(0)
    from ppjax.ops.bands import _gather_sum

    grad = jax.grad(lambda a: jnp.sum(apply_bands(apply_bands(a, *cols, axis=2), *rows, axis=1) * cotangent))(canvas)
    reference = jax.grad(lambda a: jnp.sum(_gather_sum(_gather_sum(a, cols[0], cols[1], 2), rows[0], rows[1], 1) * cotangent))(canvas)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(reference), atol=1e-5)


def _family(name: str):
    from ppjax.models import normalised_apply, places365

    module = places365.build(name=name)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return normalised_apply(module, places365.SPECS[name]), variables


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,sizes",
    [
        ("places365", ((97, 131, 256), (64, 64, 256))),
        ("places365-resnet18", ((97, 131, 256),)),
        ("places365-densenet161", ((61, 83, 128),)),  # 2 minutes at 256 on 2 cores: a small canvas of its own
        ("efficientnet-lite0", ((97, 131, 256), (299, 203, 384))),
        ("mobilenet-v2", ((97, 131, 256), (299, 203, 384))),
    ],
)
def test_models_on_a_canvas_give_the_photos_own_logits(name, sizes):
    """Every family ppjax ports, at odd sizes, on a canvas whose padding holds noise: the photo's
    own logits (highest matmul precision, as the parity tests), and the photo's own input gradient."""
    from ppjax.models.masked import level_extents, masked_apply

    if name == "efficientnet-lite0":
        from ppjax.models.efficientnet_lite import SPEC, build, make_apply

        module = build()
        apply, variables = make_apply(module, SPEC), module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    elif name == "mobilenet-v2":
        from ppjax.models import mobilenet_v2

        module = mobilenet_v2.build()
        apply, variables = mobilenet_v2.make_apply(module), module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    else:
        apply, variables = _family(name)
    with jax.default_matmul_precision("highest"):
        for h, w, side in sizes:
            rgb = _photo(h, w)
            canvas = next((c for c in CANVASES if c.height == side), None) or Canvas(side, side, 7, 0, True)
            x, _ = _batch(rgb, canvas)
            extents = jnp.asarray(level_extents(apply, variables, h, w, canvas.shape))[None]
            ours = jax.jit(lambda v, a, e: masked_apply(apply, v, a, e))(variables, x, extents)
            alone = jax.jit(apply)(variables, jnp.asarray(rgb[None], jnp.float32) / 255.0)
            np.testing.assert_allclose(np.asarray(ours), np.asarray(alone), atol=1e-4, rtol=1e-4)
            if name == "places365-densenet161":
                continue  # its gradient on 2 cores would double the test's minutes
            # The attack's gradient too: the photo's own inside, nothing for the padding.
            c = jnp.asarray(np.random.default_rng(2).normal(size=ours.shape[-1]), jnp.float32)
            g_canvas = jax.jit(jax.grad(lambda a, e: masked_apply(apply, variables, a, e)[0] @ c))(x, extents)
            g_alone = jax.jit(jax.grad(lambda a: apply(variables, a)[0] @ c))(jnp.asarray(rgb[None], jnp.float32) / 255.0)
            # As a whole (relative L2 error): the canvas's sums round differently, and a random
            # network's gradient magnifies that (MobileNetV2 at 299x203: 1.4e-3, as with every
            # module masked); the global mean reading unmasked padding gives 0.2 to 0.45.
            error = np.linalg.norm(np.asarray(g_canvas[:, :h, :w] - g_alone)) / np.linalg.norm(np.asarray(g_alone))
            assert error < 1e-2, error
            assert float(jnp.max(jnp.abs(g_canvas.at[:, :h, :w].set(0.0)))) == 0.0


def test_canvases_each_size_goes_to():
    assert canvas_for(256, 256).shape == (256, 256) and canvas_for(1, 1).shape == (256, 256)
    assert canvas_for(299, 299).shape == (320, 320) and canvas_for(321, 300).shape == (384, 384) and canvas_for(512, 384).shape == (512, 512)
    assert canvas_for(480, 640).shape == (1088, 1088) and canvas_for(1080, 810).shape == (1088, 1088)
    assert canvas_for(64, 500).exact and not canvas_for(480, 640).exact  # classified whole up to 512
    # A strip too thin for the large canvas's transposed taps gets a canvas of its own size.
    assert taps_needed(2)[1] > CANVASES[-1].t_taps and canvas_for(1080, 2) == own_canvas(1080, 2)
    assert len({canvas_for(h, w) for h in range(128, 1081, 37) for w in range(128, 1081, 41)}) == len(CANVASES)
    # The edit methods' 512 copies of larger photos: a canvas without the whole-photo view.
    assert canvas_for(384, 512, whole=False) == SHRUNK_CANVAS and not SHRUNK_CANVAS.exact
    assert canvas_for(512, 2, whole=False) == SHRUNK_CANVAS  # its gradients by scatter take any aspect
    assert not own_canvas(600, 2, whole=False).exact and own_canvas(600, 2).exact is False
    assert geometry(SHRUNK_CANVAS, 384, 512).valid.tolist() == [384, 512]
    with pytest.raises(ValueError):
        geometry(CANVASES[0], 300, 10)
    with pytest.raises(ValueError):
        view_bands(300, 256, 7, 0)
    assert stack_bands([view_bands(20, 256, 7, 0)] * 2).index.shape == (2, len(VIEW_PAIRS), 224, 7)
