"""The mottle model (ppjax.ops.mottle) in the attack, against its host twin (ppjax.protect.mottle_fit)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.ops import mottle
from ppjax.ops.visibility import gaussian_taps
from ppjax.protect import mottle_fit


def _flat(level: int, h: int = 48, w: int = 48) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def _textured(level: int, amplitude: int, h: int = 48, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(level + rng.integers(-amplitude, amplitude + 1, (h, w, 1)), 0, 255).repeat(3, -1).astype(np.uint8)


def test_linear_light_and_luminance_agree_with_the_host_table():
    levels = np.arange(256, dtype=np.uint8)
    rgb = np.stack([levels, levels[::-1], np.roll(levels, 77)], -1)[None]
    y_host = mottle_fit.luminance(rgb)
    y_jax = np.asarray(mottle.linear(jnp.asarray(rgb / 255.0, jnp.float32)) @ jnp.asarray(mottle.LUMINANCE))
    np.testing.assert_allclose(y_jax, y_host, atol=2e-6)
    # The sRGB decoding's two published points: 0.04045 -> 0.04045 / 12.92 and 1 -> 1.
    np.testing.assert_allclose(mottle.linear(jnp.asarray([0.04045, 1.0])), [0.04045 / 12.92, 1.0], rtol=1e-5)


def test_luminance_slope_is_the_derivative_of_luminance():
    x = jnp.asarray(np.random.default_rng(1).uniform(0.05, 0.95, (5, 3)), jnp.float32)
    y = lambda v: mottle.linear(v) @ jnp.asarray(mottle.LUMINANCE)  # noqa: E731
    exact = jax.vmap(jax.grad(y))(x) / 255.0
    np.testing.assert_allclose(mottle.luminance_slope(x), exact, rtol=1e-4)


def test_kernels_are_the_hosts_gaussian_at_scale_one_and_narrower_when_shrunk():
    k = np.asarray(mottle.kernels(jnp.asarray([1.0, 0.4])))
    np.testing.assert_allclose(k.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(k[0], gaussian_taps(mottle.SIGMA), atol=1e-6)
    centre = mottle.REACH
    assert k[1, centre] > k[0, centre]  # a canvas pixel of a shrunk copy stands for more of the photo


def test_the_cap_follows_luminance_and_rises_in_texture_as_on_the_host():
    photos = [_flat(30), _flat(120), _flat(220), _textured(120, 40)]
    x0 = jnp.asarray(np.stack(photos) / 255.0, jnp.float32)
    cap = np.asarray(mottle.mottle_cap(x0, 0.02))
    inner = (slice(None), slice(10, -10), slice(10, -10))
    dark, mid, bright, busy = (c[inner[1:]].mean() for c in cap)
    assert dark < mid < bright
    assert busy > 1.5 * mid  # masking: the same mean luminance, much more room in texture
    for photo, c in zip(photos, cap):
        base, texture = mottle_fit.surround(mottle_fit.luminance(photo))
        host = 0.02 * base * np.maximum(1.0, texture / mottle.MASK_CONTRAST)
        np.testing.assert_allclose(c, host, rtol=2e-3)


def test_cap_change_brings_a_smooth_change_to_the_cap_and_leaves_grain_alone():
    x0 = jnp.asarray(_flat(60)[None] / 255.0, jnp.float32)
    slope = mottle.luminance_slope(x0)
    cap = mottle.mottle_cap(x0, 0.02)
    kernel = mottle.kernels(jnp.ones(1))
    smooth = jnp.full(x0.shape, 3.0)  # three levels everywhere: far over 2% at level 60
    d = smooth
    for _ in range(10):
        d = mottle.cap_change(d, slope, cap, kernel)
    low = mottle.blur(jnp.sum(d * slope, -1), kernel)[0, 12:-12, 12:-12]
    ratio = np.asarray(low / cap[0, 12:-12, 12:-12])
    assert ratio.max() <= 1.01 and ratio.min() > 0.9  # at the cap, not far under it
    over = np.asarray(mottle.blur(jnp.sum(smooth * slope, -1), kernel)[0, 24, 24] / cap[0, 24, 24])
    assert over > 2.0
    checker = 3.0 * (2.0 * ((np.indices((48, 48)).sum(0) % 2)[None, ..., None]) - 1.0)
    grain = jnp.asarray(np.broadcast_to(checker, x0.shape), jnp.float32)
    kept = mottle.cap_change(grain, slope, cap, kernel)
    np.testing.assert_allclose(np.asarray(kept)[0, 8:-8, 8:-8], np.asarray(grain)[0, 8:-8, 8:-8], atol=1e-3)


@pytest.mark.slow
def test_the_budget_with_a_mottle_cap_holds_every_pixel_bound_and_lowers_the_low_pass():
    rng = np.random.default_rng(2)
    x0 = jnp.asarray(np.clip(rng.normal(0.2, 0.01, (1, 40, 40, 3)), 0, 1), jnp.float32)
    x0 = jnp.rint(x0 * 255.0) / 255.0
    x = x0 + 6.0 / 255.0  # a coherent lift, over the cap
    plain = attacks.PerceptualBudget(1.2, 3.0)
    capped = attacks.PerceptualBudget(1.2, 3.0, mottle=0.02)
    lows = []
    for budget in (plain, capped):
        ctx = attacks.budget_context(budget, x0)
        ball = attacks.perceptual_ball(budget, 8.0, ctx)
        y = x
        for _ in range(5):
            y = ball.project(y, x0, ctx=ctx)
        d = (y - x0) * 255.0
        assert float(jnp.max(jnp.abs(d))) <= 8.0 + 1e-4
        assert float(jnp.min(y)) >= 0.0 and float(jnp.max(y)) <= 1.0
        from ppjax.ops.perceptual import modelled

        assert bool(jnp.all(modelled(d, ctx.metric) <= ctx.limit + 1e-4))
        lows.append(float(jnp.max(jnp.abs(mottle.blur(jnp.sum(d * mottle.luminance_slope(x0), -1), mottle.kernels(jnp.ones(1)))[0, 10:-10, 10:-10]))))
    cap = float(jnp.max(attacks.budget_context(capped, x0).cap[0, 10:-10, 10:-10]))
    assert lows[0] > 2.0 * cap
    assert lows[1] <= 1.05 * cap


def test_the_mottle_cap_must_be_a_contrast():
    with pytest.raises(ValueError, match="contrast"):
        attacks.PerceptualBudget(1.2, 3.0, mottle=2.0)
