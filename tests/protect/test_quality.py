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
    assert quality._ciede2000_chunk._cache_size() == 1
    assert quality._tile_sums._cache_size() == 1


def test_an_unchanged_image():
    a = np.full((32, 32, 3), 128, np.uint8)
    got = quality.image_quality(a, a.copy())
    assert got["psnr"] == float("inf") and got["ciede2000"] == 0.0 and got["linf_255"] == 0.0
    assert got["ssim"] == pytest.approx(1.0)


def test_colour_difference_against_scikit_image():
    """The per-pixel CIEDE2000 behind the visibility figures agrees with scikit-image's to 1e-3,
    and so do its 95th percentile and the share of 16x16 blocks over 2 computed from skimage's map."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)  # blocks cut at the right and bottom edges
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape) * (np.arange(50) > 25)[None, :, None], 0, 255).astype(np.uint8)
    reference = deltaE_ciede2000(rgb2lab(a / 255.0), rgb2lab(b / 255.0))
    mine = quality.ciede2000_pixels(a, b)
    assert np.abs(mine - reference).max() < 1e-3
    got = quality.colour_difference(a, b)
    assert got["ciede2000"] == pytest.approx(reference.mean(), abs=1e-3)
    assert got["ciede2000_p95"] == pytest.approx(np.percentile(reference, 95), abs=1e-3)
    blocks = [reference[i : i + 16, j : j + 16].mean() > 2 for i in range(0, 37, 16) for j in range(0, 50, 16)]
    assert got["blocks_seen"] == pytest.approx(np.mean(blocks))


def test_the_visibility_of_a_known_change():
    """A grey photo with one 16x16 block changed by a clearly visible step: that block and no other
    is seen at a glance; the 95th percentile is 0 (the change covers under 5% of the pixels)."""
    a = np.full((96, 80, 3), 120, np.uint8)  # 6 x 5 = 30 blocks
    b = a.copy()
    b[16:32, 32:48] = (135, 120, 120)  # a reddish patch: CIEDE2000 about 6
    got = quality.colour_difference(a, b)
    assert got["blocks_seen"] == pytest.approx(1 / 30) and got["ciede2000_p95"] == 0.0
    assert got["ciede2000"] == pytest.approx(quality.ciede2000_pixels(a, b)[16:32, 32:48].mean() / 30, rel=1e-5)
    assert quality.visibility_words(got["ciede2000_p95"], got["blocks_seen"]) == "not visible side by side"
    b[:, :] = (135, 120, 120)
    everywhere = quality.colour_difference(a, b)
    assert everywhere["blocks_seen"] == 1.0 and quality.visibility_words(everywhere["ciede2000_p95"], everywhere["blocks_seen"]) == "visible"
    assert quality.visibility_words(4.0, 0.2) == "visible on close look"
