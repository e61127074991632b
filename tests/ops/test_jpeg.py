"""The differentiable JPEG stand-in against Pillow's real encoder and decoder."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ppjax.ops.jpeg import jpeg_round_trip, quant_tables

from ..conftest import shared_path


def _pillow_round_trip(rgb: np.ndarray, quality: int, subsampling: int = 0) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=subsampling)  # 0: as ppjax.io writes JPEG
    return np.asarray(Image.open(buf).convert("RGB"))


def test_quant_tables_follow_libjpeg_scaling():
    t50 = quant_tables(50)  # quality 50 is the Annex K tables themselves
    assert t50[0, 0, 0] == 16 and t50[0, 7, 7] == 99 and t50[1, 0, 0] == 17 and t50[1, 7, 7] == 99
    assert (quant_tables(100) == 1).all()
    assert quant_tables(75)[0, 0, 0] == 8  # (16 * 50 + 50) // 100
    assert quant_tables(10)[0, 0, 0] == 80  # scale 500
    with pytest.raises(ValueError):
        quant_tables(0)


@pytest.mark.slow
@pytest.mark.parametrize("quality", [50, 75, 95])
def test_round_trip_matches_pillow_on_real_photos(quality):
    paths = sorted(shared_path("places365_val_samples").glob("*.jpg"))[:3]
    # 250x190: not multiples of 8, so the edge padding is exercised too.
    rgb = np.stack([np.asarray(Image.open(p).convert("RGB").resize((250, 190))) for p in paths])
    real = np.stack([_pillow_round_trip(im, quality) for im in rgb]).astype(int)
    ours = np.rint(np.asarray(jpeg_round_trip(jnp.asarray(rgb, jnp.float32) / 255.0, quality)) * 255).astype(int)
    assert ours.shape == real.shape
    diff = np.abs(ours - real)
    loss = np.abs(real - rgb).mean()  # what JPEG itself changes
    # Measured: mean 0.30 / 0.36 / 0.51 grey levels at quality 50 / 75 / 95 (JPEG's own change is
    # 6.5 / 4.9 / 2.0); the rare large differences are coefficients on a rounding boundary that
    # libjpeg's integer DCT rounds the other way.
    assert diff.mean() < 0.6
    assert diff.mean() < loss / 3
    assert (diff <= 1).mean() > 0.85


@pytest.mark.slow
def test_gradient_passes_the_roundings():
    x = jnp.asarray(np.random.default_rng(0).uniform(0.4, 0.6, (1, 16, 16, 3)), jnp.float32)
    g = jax.grad(lambda v: jnp.sum(jpeg_round_trip(v, 75) * jnp.arange(3.0)))(x)
    assert np.isfinite(np.asarray(g)).all()
    # Through the linear transforms alone the round trip is the identity, so the gradient of a
    # weighted channel sum is exactly the weights where no clipping is active.
    np.testing.assert_allclose(np.asarray(g), np.broadcast_to(np.arange(3.0), g.shape), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("quality", [70, 75, 90, 95])
@pytest.mark.parametrize("size", [(299, 299), (250, 190), (251, 189)])
def test_420_round_trip_matches_pillow_on_real_photos(quality, size):
    """4:2:0, as Pillow and platforms re-encode by default: chroma averaged over 2x2 and upsampled
    by libjpeg's triangle filter; odd sizes exercise the 16-pixel padding and the edge rules."""
    paths = sorted(shared_path("imagenet_compatible", "images").glob("*.png"))[:3]
    rgb = np.stack([np.asarray(Image.open(p).convert("RGB").resize(size)) for p in paths])
    real = np.stack([_pillow_round_trip(im, quality, subsampling=2) for im in rgb]).astype(int)
    ours = np.rint(np.asarray(jpeg_round_trip(jnp.asarray(rgb, jnp.float32) / 255.0, quality, "4:2:0")) * 255).astype(int)
    diff = np.abs(ours - real)
    loss = np.abs(real - rgb).mean()
    # Measured on these photos: mean 0.25-0.53 grey levels (highest at quality 95, where the
    # integer colour conversions' roundings dominate), within 1 on 89-96% of the values, where
    # JPEG itself changes 1.7-3.8. The same bounds as for 4:4:4 above.
    assert diff.mean() < 0.6
    assert diff.mean() < loss / 3
    assert (diff <= 1).mean() > 0.85


@pytest.mark.slow
def test_traced_quality_per_image_equals_fixed_quality():
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 24, 40, 3)), jnp.float32)
    per_image = jax.jit(lambda v, q: jpeg_round_trip(v, q, "4:2:0"))(x, jnp.array([75, 90]))
    np.testing.assert_array_equal(np.asarray(per_image[:1]), np.asarray(jpeg_round_trip(x[:1], 75, "4:2:0")))
    np.testing.assert_array_equal(np.asarray(per_image[1:]), np.asarray(jpeg_round_trip(x[1:], 90, "4:2:0")))
    with pytest.raises(ValueError, match="subsampling"):
        jpeg_round_trip(x, 75, "4:1:1")
