"""Every pure image op run three ways (eager, under ``jax.jit``, under ``jax.vmap`` over images),
each against the same independent reference: scikit-image for the metrics, Pillow's encoder for the
JPEG round trip, SciPy's filters for the concealment map's texture part.

A function that is only right eagerly (a Python branch on a traced value, a reduction over the
wrong axis once vmapped) fails here.
"""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest
from PIL import Image

from ppjax.ops import concealment, metrics
from ppjax.ops.jpeg import jpeg_round_trip

skimage = pytest.importorskip("skimage")
from scipy import ndimage  # noqa: E402  (scikit-image depends on SciPy)
from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402


def _three_ways(fn, *batches):
    """``fn`` on (N, ...) batches: eagerly, jitted, and vmapped one image at a time."""
    per_image = jax.vmap(lambda *xs: fn(*(x[None] for x in xs))[0])
    return {"eager": np.asarray(fn(*batches)), "jit": np.asarray(jax.jit(fn)(*batches)), "vmap": np.asarray(per_image(*batches))}


@pytest.fixture(scope="module")
def pair(places_batch):
    """Real photos (a 64x80 crop of 3) and a copy changed by at most 6/255, both on the uint8 lattice."""
    rng = np.random.default_rng(0)
    x = places_batch[:3, 40:104, 60:140].astype(np.float32)
    y = np.clip(np.round(x * 255 + rng.integers(-6, 7, x.shape)) / 255, 0, 1).astype(np.float32)
    return x, y


def test_psnr(pair):
    x, y = pair
    ref = [peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=1.0) for a, b in zip(x, y)]
    for way, got in _three_ways(metrics.psnr, x, y).items():
        np.testing.assert_allclose(got, ref, atol=1e-3, err_msg=way)


@pytest.mark.slow
def test_ssim(pair):
    x, y = pair
    ref = [
        structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1.0, channel_axis=-1)
        for a, b in zip(x, y)
    ]  # fmt: skip
    for way, got in _three_ways(metrics.ssim, x, y).items():
        np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=way)


@pytest.mark.slow
def test_ciede2000(pair):
    x, y = pair
    ref = [deltaE_ciede2000(rgb2lab(a.astype(np.float64)), rgb2lab(b.astype(np.float64))).mean() for a, b in zip(x, y)]
    for way, got in _three_ways(metrics.ciede2000, x, y).items():
        np.testing.assert_allclose(got, ref, rtol=1e-3, err_msg=way)  # skimage rounds the CIE constants


def test_linf_255(pair):
    x, y = pair
    ref = np.abs(x - y).max(axis=(1, 2, 3)) * 255
    for way, got in _three_ways(metrics.linf_255, x, y).items():
        np.testing.assert_allclose(got, ref, atol=1e-3, err_msg=way)


@pytest.mark.slow
def test_jpeg_round_trip(pair):
    x, _ = pair
    rgb = np.rint(x * 255).astype(np.uint8)
    real = []
    for im in rgb:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=75, subsampling=0)
        real.append(np.asarray(Image.open(buf).convert("RGB")))
    real = np.stack(real).astype(int)
    ways = _three_ways(lambda v: jpeg_round_trip(v, 75), x)
    for way, got in ways.items():
        diff = np.abs(np.rint(got * 255).astype(int) - real)
        # As in test_jpeg: libjpeg's integer DCT rounds a few coefficients the other way.
        assert diff.mean() < 0.6 and (diff <= 1).mean() > 0.85, way
    np.testing.assert_allclose(ways["jit"], ways["eager"], atol=1e-5)
    np.testing.assert_allclose(ways["vmap"], ways["eager"], atol=1e-5)


def _texture_reference(x: np.ndarray, sigma: float) -> np.ndarray:
    """The texture map with SciPy: Sobel of the BT.601 luminance, Gaussian blur (radius 3 sigma),
    edges replicated, over its maximum, zero below the mean."""
    out = []
    for im in x.astype(np.float64):
        y = im @ np.array([0.299, 0.587, 0.114])
        k = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
        e = np.hypot(ndimage.correlate(y, k, mode="nearest"), ndimage.correlate(y, k.T, mode="nearest"))
        radius = int(np.ceil(3 * sigma))
        g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        g /= g.sum()
        e = ndimage.correlate1d(ndimage.correlate1d(e, g, axis=0, mode="nearest"), g, axis=1, mode="nearest")
        e /= e.max()
        out.append(np.where(e >= e.mean(), e, 0.0)[..., None])
    return np.stack(out)


@pytest.mark.slow
def test_texture_map(pair):
    x, _ = pair
    ref = _texture_reference(x, 4.0)
    for way, got in _three_ways(lambda v: concealment.texture_map(v, 4.0), x).items():
        close = np.abs(got - ref) < 1e-4
        # A pixel within float32 rounding of the mean may fall on the other side of the cut.
        assert close.mean() > 0.999, way


@pytest.mark.slow
def test_concealment_map(pair):
    x, _ = pair
    ways = _three_ways(lambda v: concealment.concealment_map(v, 4.0), x)
    ref = ways["eager"]
    assert ref.shape == (3, 64, 80, 1) and ref.min() >= 0 and np.allclose(ref.max(axis=(1, 2, 3)), 1.0)
    # Zero wherever the texture part (checked against SciPy above) is zero.
    assert (ref[_texture_reference(x, 4.0) == 0] == 0).all()
    np.testing.assert_allclose(ways["jit"], ref, atol=1e-5)
    np.testing.assert_allclose(ways["vmap"], ref, atol=1e-5)
