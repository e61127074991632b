"""The differentiable resize against Pillow's own, on real photos, and its gradient against the
transpose of the same linear map built densely."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ppjax.ops.resample import center_crop, pil_band, resize

from ..conftest import shared_path

_PIL = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def _photo(folder: str, n: int = 0) -> np.ndarray:
    path = sorted(p for p in shared_path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg"))[n]
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("filter", ["bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("size", [(224, 224), (256, 256), (300, 401), (151, 97)])
def test_matches_pillow_on_real_photos(filter, size):
    # Downscales, an upscale, and an odd non-square size, from a real 299x299 photo.
    rgb = _photo("imagenet_compatible", 3)
    real = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), _PIL[filter])).astype(int)
    ours = np.rint(np.asarray(resize(jnp.asarray(rgb[None], jnp.float32) / 255.0, size, filter))[0] * 255).astype(int)
    diff = np.abs(ours - real)
    # Measured: at most 1 grey level, on at most 0.13% of the values (a fixed-point sum exactly
    # on a rounding boundary); most sizes match exactly.
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.003


@pytest.mark.slow
def test_full_resolution_photo_matches_pillow():
    rgb = _photo("fullres")  # 2560x1600: a downscale by 11 with a 47-tap bicubic footprint
    x = jnp.asarray(rgb[None], jnp.float32) / 255.0
    for filter, size in (("bicubic", (224, 224)), ("bilinear", (256, 256)), ("bicubic", (1080 * 1600 // 2560, 1080))):
        real = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), _PIL[filter])).astype(int)
        diff = np.abs(np.rint(np.asarray(resize(x, size, filter))[0] * 255).astype(int) - real)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.003, (filter, size)


def _dense(n_in: int, n_out: int, filter: str) -> np.ndarray:
    band = pil_band(n_in, n_out, filter)
    m = np.zeros((n_out, n_in))
    for j in range(n_out):
        for i, w in zip(band.index[j], band.weight[j]):
            m[j, i] += w
    return m


@pytest.mark.parametrize("n_in,n_out", [(37, 11), (11, 37), (40, 40 // 3)])
def test_gradient_is_the_transpose(n_in, n_out):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(2, n_in, n_in + 3, 3)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, n_out, n_out + 1, 3)), jnp.float32)
    _, vjp = jax.vjp(lambda v: resize(v, (n_out, n_out + 1), "bicubic", quantise=False), x)
    (got,) = vjp(g)
    rows, cols = _dense(n_in, n_out, "bicubic"), _dense(n_in + 3, n_out + 1, "bicubic")
    # resize is x -> R x C^T per channel, so its gradient is g -> R^T g C.
    want = np.einsum("ji,njkc->nikc", rows, np.einsum("lk,njlc->njkc", cols, np.asarray(g)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
    # The weights of every output pixel sum to one (up to Pillow's 22-bit fixed point).
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-5)


def test_jit_and_vmap_agree_with_eager():
    x = jnp.asarray(_photo("imagenet_compatible", 5)[None, :64, :80], jnp.float32) / 255.0
    x = jnp.concatenate([x, x[:, ::-1]])
    eager = resize(x, (24, 31), "bicubic")
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: resize(v, (24, 31), "bicubic"))(x)), np.asarray(eager))
    per_image = jax.vmap(lambda v: resize(v[None], (24, 31), "bicubic")[0])(x)
    np.testing.assert_allclose(np.asarray(per_image), np.asarray(eager), atol=1e-6)


def test_center_crop_follows_torchvision_offsets():
    x = jnp.arange(1 * 7 * 9 * 1, dtype=jnp.float32).reshape(1, 7, 9, 1)
    out = center_crop(x, (4, 4))
    # torchvision: top = round((7 - 4) / 2) = 2 (banker's rounding of 1.5), left = round(2.5) = 2.
    assert out.shape == (1, 4, 4, 1) and float(out[0, 0, 0, 0]) == float(x[0, 2, 2, 0])
    with pytest.raises(ValueError):
        center_crop(x, (8, 4))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="filter"):
        pil_band(10, 5, "nearest-ish")
    with pytest.raises(ValueError):
        pil_band(0, 5)
