"""The any-size quality figures (one program each) against the whole-image metrics of ops.metrics."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from ppjax.ops import metrics
from ppjax.protect import quality


@pytest.mark.slow
@pytest.mark.parametrize("h, w", [(5, 7), (301, 1000)])  # too small for SSIM; 8 SSIM tiles and 2 CIEDE2000 chunks
def test_image_quality_matches_the_whole_image_metrics(h, w):
    rng = np.random.default_rng(h)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    got = quality.image_quality(a, b)
    x, y = jnp.asarray(a[None] / 255.0, jnp.float32), jnp.asarray(b[None] / 255.0, jnp.float32)
    assert got["psnr"] == pytest.approx(float(metrics.psnr(x, y)[0]), abs=1e-4)
    assert got["ciede2000"] == pytest.approx(float(metrics.ciede2000(x, y)[0]), rel=1e-5)
    assert got["linf_255"] == np.abs(a.astype(int) - b.astype(int)).max()
    if metrics.ssim_defined(a.shape):
        assert got["ssim"] == pytest.approx(float(metrics.ssim(x, y)[0]), abs=1e-6)
    else:
        assert got["ssim"] is None


def test_one_program_serves_every_size():
    rng = np.random.default_rng(1)
    for h, w in [(40, 60), (300, 257), (301, 1000)]:  # the last spans two CIEDE2000 chunks
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        quality.image_quality(a, a[::-1].copy())
    assert quality._ciede2000_sum._cache_size() == 1
    assert quality._tile_sums._cache_size() == 1


def test_an_unchanged_image():
    a = np.full((32, 32, 3), 128, np.uint8)
    got = quality.image_quality(a, a.copy())
    assert got["psnr"] == float("inf") and got["ciede2000"] == 0.0 and got["linf_255"] == 0.0
    assert got["ssim"] == pytest.approx(1.0)
