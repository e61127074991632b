"""Mottle on written bytes: the measure and the fit (ppjax.protect.mottle_fit, quality.mottle)."""

import numpy as np

from ppjax.ops.mottle import FLARE
from ppjax.protect.mottle_fit import contrast_map, contrast_of, fit_mottle, luminance, surround
from ppjax.protect.quality import MOTTLE_SEEN, mottle, psnr_ssim


def _srgb_y(level: int) -> float:
    v = level / 255.0
    return (v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4) * (0.2126 + 0.7152 + 0.0722)


def _checker(h: int, w: int) -> np.ndarray:
    return (2 * (np.indices((h, w)).sum(0) % 2) - 1)[..., None]


def test_a_uniform_change_has_its_weber_contrast_inside_the_photo():
    original = np.full((64, 64, 3), 100, np.uint8)
    changed = np.full_like(original, 102)
    c = contrast_map(original, changed)
    expected = (_srgb_y(102) - _srgb_y(100)) / (_srgb_y(100) + FLARE)
    np.testing.assert_allclose(c[20:-20, 20:-20], expected, rtol=1e-4)
    assert c[0, 0] < 0.7 * expected  # zero change beyond the edge: the low-pass halves it there


def test_grain_carries_little_contrast_and_a_blotch_carries_all_of_its_own():
    original = np.full((64, 64, 3), 50, np.uint8)
    grain = (original + 2 * _checker(64, 64)).astype(np.uint8)
    blotch = original.copy()
    blotch[16:48, 16:48] += 2
    assert contrast_map(original, grain)[8:-8, 8:-8].max() < 0.1 * contrast_map(original, blotch)[32, 32]
    seen_grain, seen_blotch = mottle(original, grain), mottle(original, blotch)
    assert seen_grain["mottle_p95"] < MOTTLE_SEEN < seen_blotch["mottle_p95"]
    assert seen_grain["blocks_mottled"] == 0.0
    assert seen_blotch["blocks_mottled"] == 4 / 16  # the 2x2 blocks wholly inside the blotch, of the 4x4
    assert seen_blotch["smooth"] == 1.0
    assert mottle(original, original) == {"mottle_p95": 0.0, "blocks_mottled": 0.0, "smooth": 1.0}


def test_texture_is_not_counted_as_smooth():
    rng = np.random.default_rng(0)
    busy = rng.integers(40, 216, (64, 64, 1)).repeat(3, -1).astype(np.uint8)
    assert mottle(busy, np.clip(busy.astype(int) + 2, 0, 255).astype(np.uint8))["smooth"] < 0.05


def test_fit_mottle_keeps_or_drops_whole_pixels_and_brings_the_low_pass_under_the_cap():
    rng = np.random.default_rng(3)
    original = np.full((96, 96, 3), 45, np.uint8)
    change = rng.integers(1, 4, (96, 96, 1)) * np.array([1, 1, 2])  # a dark lift, over 2% everywhere
    changed = (original + change).astype(np.uint8)
    before = contrast_map(original, changed)[10:-10, 10:-10]
    assert before.min() > 1.5 * 0.02
    fitted = fit_mottle(original, changed, 0.02)
    after = contrast_map(original, fitted)
    assert after.max() <= 0.02 * 1.001
    moved = np.any(fitted != original, axis=-1)
    assert 0.1 < moved.mean() < 0.6  # thinned, not wiped
    np.testing.assert_array_equal(fitted[moved], changed[moved])  # a pixel keeps its whole change or none
    assert psnr_ssim(original, fitted)[0] > psnr_ssim(original, changed)[0]
    np.testing.assert_array_equal(fit_mottle(original, changed, 0.02), fitted)  # the same bytes again


def _blotchy(h: int, w: int, seed: int):
    """A smooth dark gradient with texture in one corner, and a change with blotches 16 pixels wide."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 90, w)[None, :, None] + np.linspace(0, 30, h)[:, None, None]
    original = np.repeat(ramp, 3, -1)
    original[: h // 3, : w // 3] += rng.normal(0, 25, (h // 3, w // 3, 1))
    blotches = np.kron(rng.normal(0, 3, (h // 16 + 1, w // 16 + 1, 3)), np.ones((16, 16, 1)))[:h, :w]
    original = np.clip(np.round(original), 0, 255).astype(np.uint8)
    changed = np.clip(original + np.round(blotches + rng.normal(0, 1, (h, w, 3))), 0, 255).astype(np.uint8)
    return original, changed


def test_a_large_photo_fitted_in_tiles_gets_the_bytes_of_the_whole(monkeypatch):
    from ppjax.protect import mottle_fit

    original, changed = _blotchy(1100, 1300, 5)  # over two tiles: 3 x 3 of 512, the last ones cut
    whole = mottle_fit._fit(original, changed, 0.02, (0, 0))
    assert 0.05 < np.mean(np.any(whole != changed, axis=-1)) < 0.95  # the fit has work to do
    np.testing.assert_array_equal(fit_mottle(original, changed, 0.02), whole)
    np.testing.assert_array_equal(fit_mottle(original, changed, 0.02, workers=1), whole)
    monkeypatch.setattr(mottle_fit, "_HALO", 8)  # a margin under a pixel's reach: the tiles' edges show
    assert not np.array_equal(fit_mottle(original, changed, 0.02), whole)


def test_fit_mottle_leaves_grain_and_texture_as_they_are():
    original = np.full((64, 64, 3), 128, np.uint8)
    grain = (original + 3 * _checker(64, 64)).astype(np.uint8)
    np.testing.assert_array_equal(fit_mottle(original, grain, 0.02), grain)
    rng = np.random.default_rng(4)
    busy = rng.integers(60, 196, (64, 64, 1)).repeat(3, -1).astype(np.uint8)
    lifted = (busy + 2).astype(np.uint8)
    kept = np.any(fit_mottle(busy, lifted, 0.02) != busy, axis=-1).mean()
    assert kept > 0.9  # the texture's own contrast masks a lift of two levels
    assert luminance(lifted).mean() > luminance(busy).mean()


def _dark_sky(h: int = 48, w: int = 48) -> np.ndarray:
    """A smooth dark gradient with a touch of sensor noise: where mottle shows first."""
    rng = np.random.default_rng(5)
    ramp = 30 + 30 * np.linspace(0, 1, h)[:, None, None] + np.array([0, 8, 25])
    return np.clip(np.rint(ramp + rng.normal(0, 0.4, (h, w, 3))), 0, 255).astype(np.uint8)


import pytest  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("channel", [pytest.param("social", marks=pytest.mark.core), "exact"])
def test_written_bytes_hold_the_mottle_cap_and_without_it_do_not(tiny, tmp_path, channel):
    from ppjax import attacks
    from ppjax.io import read_image, write_image
    from ppjax.protect import Protector, protect_files
    from ppjax.protect.mottle_fit import surround

    src = tmp_path / "sky.png"
    write_image(src, _dark_sky())
    original = read_image(src).rgb
    base, texture = surround(luminance(original))
    smooth = (texture < 0.05)[6:-6, 6:-6]
    worst = []
    for cap in (None, 0.02):
        budget = attacks.PerceptualBudget(1.2, 3.0, mottle=cap)
        p = Protector([tiny], eps=8.0, steps=3, channel=channel, perceptual=budget, margin=1e3)
        out = tmp_path / f"{cap}.png"
        (result,) = protect_files(p, [(src, out)], channel_rounds=0)
        assert result.error is None
        written = read_image(out).rgb
        worst.append(float(contrast_of(luminance(original), base, written)[6:-6, 6:-6][smooth].max()))
    assert worst[0] > 1.1 * 0.02  # the attack alone mottles this sky past the cap
    assert worst[1] <= 0.02 * 1.001


def test_a_part_of_the_photo_takes_the_dither_where_it_stands():
    from ppjax.protect.mottle_fit import _dither

    whole = _dither((40, 50))
    np.testing.assert_array_equal(_dither((30, 37), (3, 13)), whole[3:33, 13:50])
    assert sorted(np.unique(whole[:8, :8])) == sorted((np.arange(64) + 0.5) / 64)


def test_a_change_a_little_over_the_cap_is_thinned_not_wiped():
    # A dark sky whose change of one grey level is a little over the cap in part of it (as a
    # working copy's, carried back): the fit holds the cap and keeps most of the change. (Its
    # first schedule, which took the whole neighbourhood of every pixel left a hair over, kept 73%.)
    rng = np.random.default_rng(11)
    h, w = 200, 240
    original = np.clip(np.rint(45 + 10 * np.linspace(0, 1, w)[None, :, None] + rng.normal(0, 0.4, (h, w, 3))), 0, 255).astype(np.uint8)
    share = 0.3 + 0.4 * (0.5 + 0.5 * np.sin(np.linspace(0, 3 * np.pi, h)))[:, None]  # 0.3..0.7 of the pixels, row by row
    changed = (original + (rng.random((h, w)) < share)[..., None]).astype(np.uint8)
    y0 = luminance(original)
    base, texture = surround(y0)
    assert (texture < 0.05).mean() > 0.9
    over = contrast_of(y0, base, changed) / 0.02
    assert 0.1 < (over > 1.0).mean() < 0.5 and over.max() < 1.6
    fitted = fit_mottle(original, changed, 0.02)
    assert (contrast_of(y0, base, fitted) / 0.02).max() <= 1.0 + 1e-3
    moved, kept = np.any(changed != original, -1), np.any(fitted != original, -1)
    assert kept.sum() / moved.sum() > 0.8
    np.testing.assert_array_equal(fitted[kept], changed[kept])  # whole changes kept or dropped
