"""A differentiable stand-in for the JPEG round trip that ``ppjax protect`` writes.

JPEG output undoes part of a small perturbation: the encoder quantises each 8×8 block's DCT
coefficients, and fine sign patterns fall below the quantisation steps. To protect an image *as
decoded*, the refinement rounds of :mod:`ppjax.protect` attack the classifier through this
function instead of through the identity.

It follows baseline libjpeg (what Pillow calls) with the settings of :func:`ppjax.io.write_image`:
JFIF RGB→YCbCr, 4:4:4 (no chroma subsampling), level shift, orthonormal 8×8 DCT-II, the Annex K
tables scaled by quality as ``jpeg_set_quality`` does, rounding, and the inverse. Its integer
roundings (colour planes, coefficients, decoded planes, pixels) pass gradients straight through:
their forward values are exact, so the output is on average within half a grey level of Pillow's
decoder (a coefficient on a rounding boundary, which libjpeg's integer DCT rounds the other way,
can differ by a whole quantisation step), and the gradient is that of the linear transforms
around them (the "straight-through" estimator; Shin & Song 2017 make JPEG differentiable the same
way, with a cubic surrogate for rounding). The matrix products run at full float32 precision, so
TF32 on GPUs does not add error of its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["quant_tables", "jpeg_round_trip"]

_EXACT = jax.lax.Precision.HIGHEST

# ITU-T T.81 Annex K.1 and K.2: the example luminance and chrominance tables libjpeg scales.
_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)  # fmt: skip
_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
]).reshape(8, 8)  # fmt: skip

_RGB_TO_YCC = np.array([
    [0.299, 0.587, 0.114],
    [-0.168735892, -0.331264108, 0.5],
    [0.5, -0.418687589, -0.081312411],
])  # fmt: skip
_YCC_TO_RGB = np.array([
    [1.0, 0.0, 1.402],
    [1.0, -0.344136286, -0.714136286],
    [1.0, 1.772, 0.0],
])  # fmt: skip


def quant_tables(quality: int) -> np.ndarray:
    """(2, 8, 8) luminance and chrominance quantisation steps for ``quality`` in 1..100, scaled as
    libjpeg's ``jpeg_set_quality`` does for baseline JPEG."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    tables = (np.stack([_LUMA, _CHROMA]) * scale + 50) // 100
    return np.clip(tables, 1, 255).astype(np.float32)


def _dct_matrix() -> np.ndarray:
    k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    c = np.cos((2 * n + 1) * k * np.pi / 16) * np.sqrt(2 / 8)
    c[0] /= np.sqrt(2)
    return c.astype(np.float32)


def _straight_through_round(v: jnp.ndarray) -> jnp.ndarray:
    return v + jax.lax.stop_gradient(jnp.round(v) - v)


def jpeg_round_trip(x01: jnp.ndarray, quality: int) -> jnp.ndarray:
    """Encode and decode (N, H, W, 3) pixels in [0, 1] as 4:4:4 baseline JPEG at ``quality``
    (static, 1..100); returns (N, H, W, 3) pixels in [0, 1] on the uint8 lattice (values k/255).

    Sizes that are not multiples of 8 are padded by repeating the last row and column, as the
    encoder does, and cropped back.
    """
    n, h, w, _ = x01.shape
    ph, pw = -h % 8, -w % 8
    x = jnp.pad(x01 * 255.0, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    # Every stage works on integers in libjpeg; rounding them here keeps the forward value close.
    ycc = jnp.einsum("nhwc,dc->nhwd", x, jnp.asarray(_RGB_TO_YCC, jnp.float32), precision=_EXACT) + jnp.array([0.0, 128.0, 128.0])
    ycc = jnp.clip(_straight_through_round(ycc), 0.0, 255.0) - 128.0
    # Blocks: (N, H/8, 8, W/8, 8, 3); the DCT runs over the two within-block axes.
    blocks = ycc.reshape(n, (h + ph) // 8, 8, (w + pw) // 8, 8, 3)
    c = jnp.asarray(_dct_matrix())
    coef = jnp.einsum("ua,vb,nyaxbd->nyuxvd", c, c, blocks, precision=_EXACT)
    tables = quant_tables(quality)
    steps = jnp.asarray(np.stack([tables[0], tables[1], tables[1]], axis=-1))[None, None, :, None, :, :]
    coef = _straight_through_round(coef / steps) * steps
    back = jnp.einsum("ua,vb,nyuxvd->nyaxbd", c, c, coef, precision=_EXACT).reshape(n, h + ph, w + pw, 3)
    back = jnp.clip(_straight_through_round(back + 128.0), 0.0, 255.0) - jnp.array([0.0, 128.0, 128.0])
    rgb = jnp.einsum("nhwd,cd->nhwc", back, jnp.asarray(_YCC_TO_RGB, jnp.float32), precision=_EXACT)
    rgb = jnp.clip(_straight_through_round(rgb), 0.0, 255.0)
    return rgb[:, :h, :w, :] / 255.0
