"""The perceptual budget in the attack and on the bytes: every written pixel within its CIEDE2000
allowance (and the L-infinity ball and PSNR floor), full-size carry-back included; the options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.protect import Protector
from ppjax.protect.config import ProtectConfig, parse_delta_e
from ppjax.protect.fullsize import fit_allowance
from ppjax.protect.quality import colour_difference

from ..attack_models import protect_uint8
from ..budget_check import ROUNDING, over_allowance

BUDGET = attacks.PerceptualBudget(1.0, 2.5)


def _over_allowance(original: np.ndarray, changed: np.ndarray) -> float:
    return over_allowance(original, changed, BUDGET.flat, BUDGET.busy)


def _psnr(a, b):
    d = a.astype(np.float64) - b
    return 10 * np.log10(255.0**2 / np.mean(d * d, axis=(1, 2, 3)))


@pytest.mark.parametrize("method", ["pgd", pytest.param("mifgsm", marks=pytest.mark.slow)])
def test_written_bytes_keep_every_budget(linear, photos, method):
    """Exact channel, a batch of real crops: no pixel past its allowance, its eps or the floor."""
    p = Protector([linear], method=method, eps=6.0, steps=4, min_psnr=36.0, perceptual=BUDGET)
    q = protect_uint8(p, jax.random.key(0), photos)[0]
    assert np.abs(q.astype(int) - photos).max() <= 6
    assert (_psnr(q, photos) >= 36.0).all()
    assert not np.array_equal(q, photos)
    for original, changed in zip(photos, q):
        assert _over_allowance(original, changed) <= ROUNDING


@pytest.mark.slow
def test_perceptual_steps_change_lightness_not_colour(linear, photos):
    """At the same eps, the budget's change shows far less (mean CIEDE2000) than sign steps', and
    most of it is a change of lightness (the three channels moving together)."""
    linf = protect_uint8(Protector([linear], eps=4.0, steps=8, margin=100.0), jax.random.key(0), photos)[0]
    budget = protect_uint8(Protector([linear], eps=4.0, steps=8, margin=100.0, perceptual=BUDGET), jax.random.key(0), photos)[0]
    shown = lambda q: np.mean([colour_difference(a, b)["ciede2000"] for a, b in zip(photos, q)])  # noqa: E731
    assert shown(budget) < 0.6 * shown(linf)

    def colour_share(q):
        d = q.astype(np.float64) - photos
        grey = d.mean(-1, keepdims=True)
        return np.sum((d - grey) ** 2) / np.sum(d * d)

    assert colour_share(budget) < 0.5 * colour_share(linf)


def test_focused_steps_follow_the_gradients_size_at_the_same_mean_size(photos):
    """Focus 0 is the unweighted step; focus F weights each pixel's step by its gradient's size in
    the metric to the power F, at a root mean square of 1 over the pixels with a gradient, and
    leaves the canvas's padding (no gradient) still."""
    from ppjax.ops import perceptual

    x0 = jnp.asarray(photos[:2], jnp.float32) / 255.0
    g = jnp.asarray(np.random.default_rng(0).normal(size=x0.shape), jnp.float32).at[:, -5:].set(0.0)
    ctx = attacks.budget_context(BUDGET, x0)

    def step(focus):
        rule = attacks.perceptual_step(attacks.PerceptualBudget(1.0, 2.5, focus=focus), 4.0, ctx)
        return np.asarray(rule.update(g, rule.init(x0))[0])

    plain = step(0.0)
    size = np.asarray(perceptual.gradient_size(g, ctx.inverse))
    assert size.shape == x0.shape[:3] and not size[:, -5:].any() and (size[:, :-5] > 0).all()
    for focus in (0.5, 1.0):
        focused = step(focus)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.linalg.norm(focused, axis=-1) / np.linalg.norm(plain, axis=-1)
        moving = size > 0
        # Same direction per pixel; weights size**F over their RMS, whose own RMS is then 1.
        np.testing.assert_allclose(focused[moving] * np.linalg.norm(plain[moving], axis=-1, keepdims=True), plain[moving] * np.linalg.norm(focused[moving], axis=-1, keepdims=True), atol=1e-5)
        expected = size**focus / np.sqrt(np.mean(size[:, :-5] ** (2 * focus), axis=(1, 2), keepdims=True))
        np.testing.assert_allclose(ratio[moving], expected[moving], rtol=1e-4)
        assert not focused[:, -5:].any()
    with pytest.raises(ValueError, match="focus"):
        attacks.PerceptualBudget(1.0, 2.5, focus=1.5)


def test_projection_with_and_without_prepared_context_agree(photos):
    x0 = jnp.asarray(photos, jnp.float32) / 255.0
    ball = attacks.with_psnr_floor(attacks.perceptual_ball(BUDGET, 4.0), 38.0)
    x = jnp.clip(x0 + 0.03 * jnp.sin(jnp.arange(x0.size).reshape(x0.shape)), 0.0, 1.0)
    project = jax.jit(ball.project)
    np.testing.assert_allclose(np.asarray(project(x, x0)), np.asarray(project(x, x0, None, jax.jit(ball.prepare)(x0))), atol=1e-6)
    inside = project(x, x0)
    assert float(jnp.max(jnp.abs(inside - x0))) <= 4.0 / 255.0 + 1e-6


@pytest.mark.slow
def test_full_size_fit_holds_the_budget_and_only_shrinks(monkeypatch):
    """A change carried to a photo larger than one tile (tiles' seams included) fits each pixel's
    own allowance on the full-size original, and never grows; the pixels over, fitted in several
    calls, give the bytes of one."""
    from PIL import Image

    from ..attack_models import imagenet_photos

    original = np.asarray(Image.fromarray(imagenet_photos(1)[0][1]).resize((600, 700), Image.BICUBIC))
    rng = np.random.default_rng(0)
    changed = np.clip(original.astype(int) + rng.integers(-4, 5, original.shape), 0, 255).astype(np.uint8)
    fitted = fit_allowance(original, changed, BUDGET)
    assert _over_allowance(original, fitted) <= ROUNDING
    before, after = changed.astype(int) - original, fitted.astype(int) - original
    assert np.all(np.abs(after) <= np.abs(before)) and np.all(after * before >= 0)
    assert np.abs(after).sum() > 0.3 * np.abs(before).sum()
    # Only the pixels over their allowance are fitted, in tiles: the bytes are those of fitting the
    # whole photo at once, with its allowance computed whole (edge-padded as the tiles are).
    from ppjax.ops.metrics import srgb_to_lab
    from ppjax.ops.perceptual import REACH, allowance_of_lightness, fit_levels

    lab = srgb_to_lab(jnp.asarray(np.pad(original, ((REACH, REACH), (REACH, REACH), (0, 0)), mode="edge"), jnp.float32) / 255.0)
    limit = allowance_of_lightness(lab[..., 0], BUDGET.flat, BUDGET.busy)
    whole = fit_levels(jnp.asarray(before, jnp.float32), jnp.asarray(original, jnp.float32), limit)
    np.testing.assert_array_equal(fitted.astype(int) - original, np.asarray(whole).astype(int))
    import ppjax.protect.fullsize as fullsize

    over = int(np.sum(np.any(fitted != changed, axis=-1)))
    monkeypatch.setattr(fullsize, "_FIT_CHUNK", 1 << 14)
    assert over > 2 * fullsize._FIT_CHUNK  # several calls, the last one partial
    np.testing.assert_array_equal(fit_allowance(original, changed, BUDGET), fitted)


def test_options_and_their_errors(tmp_path):
    assert parse_delta_e("1,2.5") == (1.0, 2.5) and parse_delta_e("2") == (2.0, 2.0) and parse_delta_e("off") is None
    for bad in ("2,1", "0,1", "a,b", "1,2,3", "-1"):
        with pytest.raises(ValueError, match="--delta-e"):
            parse_delta_e(bad)
    make = lambda **kw: ProtectConfig((tmp_path,), tmp_path / "out", models=("efficientnet-lite0",), **kw)  # noqa: E731
    assert make().delta_e == "1.2,3" and make().perceptual == attacks.PerceptualBudget(1.2, 3.0, mottle=0.02, focus=0.5)
    assert make(strength="low").delta_e == "0.8,2" and make(delta_e="OFF").perceptual is None
    assert make(method="edit").perceptual is None and make(method="cw", channel="exact").perceptual is None
    assert make(focus=0).perceptual == attacks.PerceptualBudget(1.2, 3.0, mottle=0.02) and make(strength="low").focus == 0.0
    assert make(delta_e="off").focus == 0.0
    with pytest.raises(ValueError, match="--focus is part of the perceptual budget"):
        make(delta_e="off", focus=0.5)
    with pytest.raises(ValueError, match="--focus must be in 0..1"):
        make(focus=2.0)
    with pytest.raises(ValueError, match="--delta-e works with --method"):
        make(method="masked", delta_e="1,2")
    with pytest.raises(ValueError, match="sign-step methods"):
        attacks.build("cw", [], perceptual=BUDGET)
    with pytest.raises(ValueError, match="L-infinity"):
        attacks.build("pgd", [], perceptual=BUDGET, norm="l2")
