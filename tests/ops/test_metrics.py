"""Quality metrics against scikit-image (an independent implementation) and published values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax.ops.metrics import ciede2000, linf_255, psnr, srgb_to_lab, ssim
from ppjax.ops.metrics import delta_e_2000  # checked on the published test pairs

skimage = pytest.importorskip("skimage")
from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402


@pytest.fixture(scope="module")
def pairs(places_batch):
    rng = np.random.default_rng(0)
    x = places_batch[:4].astype(np.float64)
    noise = rng.integers(-6, 7, x.shape) / 255.0
    y = np.clip(np.round((x + noise) * 255) / 255, 0, 1)
    return x, y


@pytest.mark.slow
def test_psnr_ssim_match_skimage(pairs):
    x, y = pairs
    with jax.enable_x64(True):
        p = np.asarray(psnr(jnp.asarray(x), jnp.asarray(y)))
        s = np.asarray(ssim(jnp.asarray(x), jnp.asarray(y)))
    for i in range(len(x)):
        assert p[i] == pytest.approx(peak_signal_noise_ratio(x[i], y[i], data_range=1.0), abs=1e-6)
        ref = structural_similarity(x[i], y[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1)
        assert s[i] == pytest.approx(ref, abs=1e-6)
    assert np.isinf(np.asarray(psnr(jnp.asarray(x), jnp.asarray(x)))).all()
    assert np.asarray(ssim(jnp.asarray(x), jnp.asarray(x))) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_lab_and_ciede2000_match_skimage(pairs):
    x, y = pairs
    with jax.enable_x64(True):
        lab = np.asarray(srgb_to_lab(jnp.asarray(x[0])))
        de = np.asarray(ciede2000(jnp.asarray(x), jnp.asarray(y)))
    # scikit-image rounds the CIE constants (0.008856, 7.787); ppjax uses the exact fractions.
    assert np.abs(lab - rgb2lab(x[0])).max() < 1e-3
    for i in range(len(x)):
        ref = deltaE_ciede2000(rgb2lab(x[i]), rgb2lab(y[i])).mean()
        assert de[i] == pytest.approx(ref, rel=1e-4)


# Pairs and expected differences from Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference
# formula: implementation notes, supplementary test data, and mathematical observations".
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_published_pairs():
    with jax.enable_x64(True):
        lab1 = jnp.asarray([p[0] for p in SHARMA])
        lab2 = jnp.asarray([p[1] for p in SHARMA])
        got = np.asarray(delta_e_2000(lab1, lab2))
        back = np.asarray(delta_e_2000(lab2, lab1))
    assert np.allclose(got, [p[2] for p in SHARMA], atol=1e-4)
    assert np.allclose(got, back, atol=1e-10)  # symmetric


def test_ciede2000_near_opposite_hues_and_far_colours_match_skimage():
    # Hues about 180 degrees apart are where the mean hue's rule turns: delta_e_2000 works without
    # angles (unit vectors), so its choice there is checked against the angles' formula.
    rng = np.random.default_rng(1)
    ties = np.array([
        [[50, -0.001, 2.49], [50, 0.0009, -2.49]], [[50, -0.001, 2.49], [50, 0.001, -2.49]], [[50, -0.001, 2.49], [50, 0.0011, -2.49]],
        [[50, 2.5, 0], [50, -2.5, 0]], [[40, 30, 0], [40, -30, 0]], [[40, -30, 0], [40, 30, 0]], [[50, 0, 0], [50, 0, 0]],
        [[50, 0, 0], [55, 3, -4]], [[60, 20, 15], [60, 20, 15]], [[30, 1e-3, 0], [30, 0, 0]],
    ], float)  # fmt: skip
    far = np.stack([rng.uniform([0, -100, -100], [100, 100, 100], (500, 3)) for _ in range(2)], axis=1)
    both = np.concatenate([ties, far])
    with jax.enable_x64(True):
        got = np.asarray(delta_e_2000(jnp.asarray(both[:, 0]), jnp.asarray(both[:, 1])))
        back = np.asarray(delta_e_2000(jnp.asarray(both[:, 1]), jnp.asarray(both[:, 0])))
    ref = deltaE_ciede2000(both[:, 0], both[:, 1])
    assert np.abs(got - ref).max() < 1e-6 and np.abs(back - deltaE_ciede2000(both[:, 1], both[:, 0])).max() < 1e-6
    got32 = np.asarray(delta_e_2000(jnp.asarray(both[:, 0], jnp.float32), jnp.asarray(both[:, 1], jnp.float32)))
    assert np.abs(got32 - ref).max() < 1e-3
    # Finite gradients where the hue is undefined or the colours are equal.
    g = np.asarray(jax.grad(lambda a: jnp.sum(delta_e_2000(a, jnp.asarray(ties[:, 1], jnp.float32))))(jnp.asarray(ties[:, 0], jnp.float32)))
    assert np.isfinite(g).all()


@pytest.mark.slow
def test_linf_and_gradients(pairs):
    x, y = pairs
    assert np.allclose(np.asarray(linf_255(jnp.asarray(x), jnp.asarray(y))), np.abs(x - y).max(axis=(1, 2, 3)) * 255)
    ref = jnp.asarray(y[:1], jnp.float32)

    def penalty(a):
        return ssim(a, ref).sum() + ciede2000(a, ref).sum()

    g = np.asarray(jax.grad(penalty)(jnp.asarray(x[:1], jnp.float32)))
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    # At the start of an attack the image equals the original: gradients must still be finite.
    g0 = np.asarray(jax.grad(penalty)(ref))
    assert np.isfinite(g0).all()
    gray = jnp.full((1, 16, 16, 3), 0.5, jnp.float32)  # achromatic: hue undefined
    assert np.isfinite(np.asarray(jax.grad(lambda a: ciede2000(a, gray).sum())(gray + 0.01))).all()
