"""The perceptual budget's parts: the local CIEDE2000 metric against the exact CIEDE2000, the
allowance map's response to luminance and texture on synthetic patches, the cheapest direction's
optimality, and the budget held on whole levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax.ops import perceptual
from ppjax.ops.metrics import ciede2000_map

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="module")
def photo_pixels():
    rng = np.random.default_rng(0)
    # Every kind of pixel: greys from black to white, saturated and pale colours.
    return jnp.asarray(rng.integers(0, 256, (64, 64, 3)), jnp.float32) / 255.0


_quadratic = perceptual.modelled


@pytest.mark.parametrize("levels", [1, 2, 4])
def test_local_metric_models_ciede2000(photo_pixels, levels):
    """d^T G d is the squared CIEDE2000 of small changes: within 3% (median) at 1-4 levels."""
    x0 = photo_pixels
    g = perceptual.local_metric(x0)
    rng = np.random.default_rng(levels)
    d = jnp.asarray(rng.choice([-levels, 0, levels], size=x0.shape), jnp.float32)
    x = jnp.clip(x0 + d / 255.0, 0.0, 1.0)
    d = (x - x0) * 255.0
    exact, model = ciede2000_map(x0, x), _quadratic(d, g)
    moved = exact > 0
    rel = jnp.abs(model - exact)[moved] / exact[moved]
    assert float(jnp.median(rel)) < 0.03


def test_lightness_is_cheaper_than_colour_on_greys():
    """A one-level change of all three channels of a grey moves less in CIEDE2000 than one level of
    one channel: why the budget's steps change lightness rather than colour."""
    greys = jnp.linspace(0.05, 0.95, 10)[:, None] * jnp.ones(3)
    g = perceptual.local_metric(greys)
    lightness = _quadratic(jnp.ones((10, 3)), g)
    for c in range(3):
        assert bool(jnp.all(lightness < _quadratic(jnp.broadcast_to(jnp.eye(3)[c], (10, 3)), g)))


def test_cheapest_direction_beats_every_other_direction():
    """Per pixel, no change of the same modelled CIEDE2000 raises a linear objective more."""
    rng = np.random.default_rng(1)
    x0 = jnp.asarray(rng.uniform(0.02, 0.98, (200, 3)), jnp.float32)
    grad = jnp.asarray(rng.normal(size=(200, 3)), jnp.float32)
    g = perceptual.local_metric(x0)
    best = perceptual.cheapest_direction(grad, perceptual.inverse_metric(g))
    size = _quadratic(best, g)
    # One: less only where the ridge that keeps a near-singular metric invertible bites.
    assert float(jnp.max(size)) < 1.001 and float(jnp.median(size)) > 0.999 and float(jnp.min(size)) > 0.9
    gain = jnp.sum(best * grad, -1)
    for _ in range(20):
        other = jnp.asarray(rng.normal(size=(200, 3)), jnp.float32)
        other = other * (size / _quadratic(other, g))[:, None]
        assert bool(jnp.all(jnp.sum(other * grad, -1) <= gain * (1 + 1e-3)))
    assert np.all(np.asarray(perceptual.cheapest_direction(jnp.zeros((1, 3)), perceptual.inverse_metric(g[:, :1]))) == 0.0)


def _patch(level, contrast, side=32, seed=0):
    """A (side, side, 3) grey patch of mean ``level`` (0-255) with checkerboard-like texture of
    +-``contrast`` levels."""
    rng = np.random.default_rng(seed)
    texture = rng.choice([-1.0, 1.0], size=(side, side, 1)) * contrast
    return jnp.asarray(np.clip(level + texture * np.ones(3), 0, 255) / 255.0, jnp.float32)


def _allowance_at_centre(patch, flat=1.0, busy=2.5):
    return float(perceptual.allowance(patch[None], flat, busy)[0, 16, 16])


def test_allowance_grows_with_texture():
    values = [_allowance_at_centre(_patch(128, c)) for c in (0, 2, 5, 10, 20, 40)]
    assert values[0] == pytest.approx(1.0, abs=1e-4)  # a flat mid-grey gets ``flat``
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] <= 2.5


def test_allowance_follows_luminance_adaptation():
    """Flat patches: least at black, rising through the shadows to mid-grey, level across mid-tones,
    falling towards white."""
    levels = [0, 10, 25, 40, 60, 90, 118, 130, 160, 200, 230, 245, 255]
    values = [_allowance_at_centre(_patch(v, 0)) for v in levels]
    assert values[0] == pytest.approx(float(perceptual.weber_adaptation(jnp.float32(0.0))), abs=1e-3)
    assert values[0] < 0.25  # a flat black area: a quarter of mid-grey's allowance
    rising, level_, falling = values[:7], values[7:10], values[9:]
    assert all(a < b for a, b in zip(rising, rising[1:]))
    assert max(level_) - min(level_) < 1e-3 and level_[0] == pytest.approx(1.0, abs=1e-3)
    assert all(a > b for a, b in zip(falling, falling[1:]))
    assert values[-1] == pytest.approx(perceptual.BRIGHT_FACTOR, abs=1e-3)


def _srgb_luminance(level):
    v = level / 255.0
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


@jax.jit
def _grey_ciede2000(x0, step):
    return ciede2000_map(x0, x0 + step / 255.0)[0]


def _grey_step_of(level, delta_e):
    """The upward grey change (levels, float) of a grey at ``level`` whose exact CIEDE2000 is
    ``delta_e``, by bisection."""
    lo, hi = 0.0, 40.0
    x0 = jnp.full((1, 3), level / 255.0)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if float(_grey_ciede2000(x0, jnp.float32(mid))) < delta_e:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_flat_allowance_is_one_weber_contrast_from_black_to_mid_grey():
    """On a flat grey the allowance, taken as an exact CIEDE2000 grey step, is the same Weber
    contrast on the screen (luminance change over luminance plus the screen's flare) in deep shadow
    as on mid-grey, where CIEDE2000 holds: the dark allowance follows what the eye sees on a dark
    area, not CIEDE2000's mid-grey surround (with the old linear ramp, x0.6 at black, a flat area's step was
    2.5 times mid-grey's contrast at level 2, 1.5 to 2.2 times at levels 8 to 80)."""
    def contrast(level):
        step = _grey_step_of(level, _allowance_at_centre(_patch(level, 0)))
        y = _srgb_luminance(level)
        return (_srgb_luminance(level + step) - y) / (y + perceptual.SCREEN_FLARE)

    reference = contrast(119)  # L* 50
    for level in (2, 8, 20, 45, 80):
        assert contrast(level) == pytest.approx(reference, rel=0.06)


def test_dark_texture_keeps_more_than_a_dark_flat_area():
    """Texture masks a dark change too: a busy dark patch's allowance exceeds a flat one's by
    texture's extra (under the milder dark factor), not only by the flat part's share."""
    flat_dark, busy_dark = _allowance_at_centre(_patch(20, 0)), _allowance_at_centre(_patch(20, 12))
    flat_mid, busy_mid = _allowance_at_centre(_patch(128, 0)), _allowance_at_centre(_patch(128, 12))
    assert busy_dark > flat_dark
    assert busy_dark / flat_dark > busy_mid / flat_mid


def test_scale_and_fit_levels_hold_the_budget(photo_pixels):
    """A sign-noise change of 4 levels scaled to the allowance as modelled (float), then fitted on
    whole levels: no pixel's exact CIEDE2000 over its allowance, no magnitude grown, most of the
    change kept."""
    x0 = photo_pixels[None]
    limit = jax.jit(perceptual.allowance, static_argnums=(1, 2))(x0, 1.0, 2.5)
    metric = jax.jit(perceptual.local_metric)(x0)
    rng = np.random.default_rng(2)
    x = jnp.clip(x0 + 4.0 * jnp.asarray(rng.choice([-1.0, 1.0], size=x0.shape), jnp.float32) / 255.0, 0.0, 1.0)
    d = jax.jit(perceptual.scale_to_allowance)((x - x0) * 255.0, metric, limit)
    assert float(jnp.median(ciede2000_map(x0, x0 + d / 255.0) / limit)) < 1.0
    x0_255 = jnp.rint(x0 * 255.0)
    q = jnp.rint(d)
    fitted = jax.jit(perceptual.fit_levels)(q, x0_255, limit)
    assert bool(jnp.all(ciede2000_map(x0, (x0_255 + fitted) / 255.0) <= limit))
    assert bool(jnp.all(jnp.abs(fitted) <= jnp.abs(q)))
    assert bool(jnp.all(fitted == jnp.rint(fitted)))
    assert float(jnp.sum(jnp.abs(fitted)) / jnp.sum(jnp.abs(q))) > 0.6


@pytest.mark.slow
@pytest.mark.parametrize("amplitude, chunk, chunks", [(3.0, 1024, 2), (4.0, 1024, 5), (6.0, 1024, 15), (6.0, 1 << 17, 1)])
def test_fit_levels_gathers_the_pixels_over_without_changing_the_result(amplitude, chunk, chunks, monkeypatch):
    """The passes on the pixels over their allowance alone, gathered in chunks (two, five, fifteen;
    one chunk of the whole array when a chunk is larger), give exactly the bytes of passes over the
    whole array."""
    monkeypatch.setattr(perceptual, "FIT_CHUNK", chunk)
    rng = np.random.default_rng(3)
    x0_255 = jnp.asarray(rng.integers(0, 256, (1, 256, 256, 3)), jnp.float32)
    limit = perceptual.allowance(x0_255 / 255.0, 1.2, 3.0)
    q = jnp.clip(x0_255 + jnp.asarray(rng.choice([-1.0, 0.0, 1.0], size=x0_255.shape), jnp.float32) * amplitude, 0, 255) - x0_255
    lab0 = perceptual.srgb_to_lab(x0_255 / 255.0)
    size = perceptual.delta_e_2000(lab0, perceptual.srgb_to_lab((x0_255 + q) / 255.0))
    over = int(jnp.sum(size > limit))
    assert -(-over // min(chunk, size.size)) == chunks
    fitted = jax.jit(perceptual.fit_levels)(q, x0_255, limit)
    whole = jax.jit(perceptual._fit_passes)(q, x0_255, limit, lab0, size)
    assert bool(jnp.all(fitted == whole))
    assert bool(jnp.all(ciede2000_map(x0_255 / 255.0, (x0_255 + fitted) / 255.0) <= limit))


def test_local_metric_hue_identities_match_the_angles():
    """CIEDE2000's weights from the hue's unit vector are those from its angle."""
    from ppjax.ops.metrics import ciede2000_weights

    rng = np.random.default_rng(4)
    hue = jnp.asarray(rng.uniform(0.0, 360.0, 1000), jnp.float32)
    lightness, chroma = jnp.asarray(rng.uniform(0, 100, 1000), jnp.float32), jnp.asarray(rng.uniform(0, 120, 1000), jnp.float32)
    direction = (jnp.cos(jnp.radians(hue)), jnp.sin(jnp.radians(hue)))
    for a, b in zip(ciede2000_weights(lightness, chroma, hue), ciede2000_weights(lightness, chroma, hue, direction)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
