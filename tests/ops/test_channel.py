"""The differentiable channel against the real one (Pillow), variant by variant, on real photos;
the panel's variants; the draws' determinism."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ppjax.io.real_channel import apply_real
from ppjax.ops.channel import ChannelDraws, Variant, apply_variant, channel_draws, panel, platform_size, view_size

from ..conftest import shared_path


def _photo(folder: str, n: int = 0) -> np.ndarray:
    path = sorted(p for p in shared_path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg"))[n]
    return np.asarray(Image.open(path).convert("RGB"))


def _compare(rgb: np.ndarray, variants) -> dict:
    x = jnp.asarray(rgb[None], jnp.float32) / 255.0
    out = {}
    for v in variants:
        real = apply_real(rgb, v).astype(int)
        ours = np.rint(np.asarray(apply_variant(x, v))[0] * 255).astype(int)
        assert ours.shape == real.shape == (*view_size(*rgb.shape[:2], v.view), 3), v
        out[v.label()] = np.abs(ours - real)
    return out


def test_social_panel_matches_pillow_on_a_real_photo():
    rgb = _photo("imagenet_compatible", 7)
    for label, diff in _compare(rgb, panel("social", *rgb.shape[:2])).items():
        # Measured: resizes alone within 1 grey level on <0.2% of values; with a JPEG re-encode in
        # between, mean 0.24-0.45 and max 14 (libjpeg's integer DCT rounds some coefficients the
        # other way, and a resize spreads the difference).
        if label.startswith("as written"):
            assert diff.max() <= 1 and (diff > 0).mean() < 0.005, label
        else:
            assert diff.mean() < 0.6 and diff.max() <= 20, label


@pytest.mark.slow
def test_full_resolution_panel_matches_pillow():
    rgb = _photo("fullres")  # 2560x1600: platform shrinks to 2048 and 1080, JPEG at each size
    variants = [v for v in panel("social", *rgb.shape[:2]) if v.filter == "bicubic" and v.view == "demo"]
    assert {v.platform for v in variants} == {None, 2048, 1080}
    for label, diff in _compare(rgb, variants).items():
        # Measured: mean under 0.21, max 11 grey levels.
        assert diff.mean() < 0.35 and diff.max() <= 16, label


def test_panel_contents():
    small = panel("social", 299, 299)
    assert len(small) == 15 and Variant("exact") in small and Variant("direct", "bicubic", 75) in small
    large = panel("social", 1600, 2560)
    assert len(large) == 36 and not any(v.view == "exact" for v in large)  # never classified whole
    assert {v.platform for v in large} == {None, 2048, 1080} and {v.quality for v in large} == {None, 90, 75}
    assert panel("exact", 1600, 2560) == (Variant("exact"),)
    assert platform_size(1600, 2560, 1080) == (675, 1080) and platform_size(1000, 1080, 1080) is None
    with pytest.raises(ValueError):
        panel("lab", 10, 10)
    with pytest.raises(ValueError):
        Variant("demo", quality=101)


def test_draws_depend_on_each_images_key_not_on_its_batch():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(3, 40, 48, 3)), jnp.float32)
    keys = jax.random.split(jax.random.key(7), 3)
    draws = channel_draws(40, 48, draws=2)
    assert draws.exact and len(draws.structures) == 8
    for step in (0, 3):
        together = draws(keys, step, x)
        alone = draws(keys[1:2], step, x[1:2])
        assert [g.shape for g in together] == [(6, 224, 224, 3), (3, 40, 48, 3)]
        # Image 1's draws (rows 1 and 4 of the first group, row 1 of the second) do not change.
        np.testing.assert_array_equal(np.asarray(together[0][1::3]), np.asarray(alone[0]))
        np.testing.assert_array_equal(np.asarray(together[1][1:2]), np.asarray(alone[1]))
    # Jitted with a traced step, the same draws.
    jitted = jax.jit(lambda k, s, v: draws(k, s, v))(keys, jnp.int32(3), x)
    np.testing.assert_allclose(np.asarray(jitted[0]), np.asarray(draws(keys, 3, x)[0]), atol=1e-6)


def test_large_photos_get_no_full_size_jpeg_draw():
    draws = channel_draws(3024, 4032)
    assert not draws.exact
    assert all(v.quality is None or v.platform is not None for v in draws.structures)
    with pytest.raises(ValueError):
        ChannelDraws((), 2)
