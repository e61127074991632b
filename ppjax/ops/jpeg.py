"""A differentiable stand-in for a JPEG encode and decode, as Pillow (libjpeg) does them.

JPEG undoes part of a small perturbation: the encoder quantises each 8×8 block's DCT
coefficients, and fine sign patterns fall below the quantisation steps; with 4:2:0 chroma
subsampling (the default of Pillow and of most platforms that re-encode uploads) the colour planes
also lose half their resolution each way. To protect an image *as decoded*, the attack reaches
the classifier through this function (:mod:`ppjax.ops.channel`, and the JPEG refinement rounds of
:mod:`ppjax.protect`) instead of through the identity.

It follows baseline libjpeg: JFIF RGB→YCbCr; for 4:2:0, the image padded by repeating its edge to
a multiple of 16, the chroma planes averaged over 2×2 blocks with libjpeg's alternating rounding
bias, and on decoding libjpeg's "fancy" (triangle, 3/4 and 1/4) upsampling with its rounding
biases and edge replication; level shift, orthonormal 8×8 DCT-II, the Annex K tables scaled by
quality as ``jpeg_set_quality`` does, rounding, and the inverse. 4:4:4 is what
:func:`ppjax.io.write_image` writes. Its integer
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

__all__ = ["SUBSAMPLING", "quant_tables", "jpeg_round_trip"]

#: Chroma subsampling modes, by Pillow's names.
SUBSAMPLING = ("4:4:4", "4:2:0")

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
    return np.asarray(_tables(np.asarray(quality)), np.float32)


def _tables(quality):
    """(..., 2, 8, 8) steps for integer qualities of any shape, NumPy or traced JAX."""
    xp = jnp if isinstance(quality, jax.Array) else np
    q = xp.clip(quality, 1, 100)[..., None, None, None]
    scale = xp.where(q < 50, 5000 // q, 200 - 2 * q)
    return xp.clip((xp.asarray(np.stack([_LUMA, _CHROMA])) * scale + 50) // 100, 1, 255).astype(xp.float32)


def _dct_matrix() -> np.ndarray:
    k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    c = np.cos((2 * n + 1) * k * np.pi / 16) * np.sqrt(2 / 8)
    c[0] /= np.sqrt(2)
    return c.astype(np.float32)


def _straight_through_round(v: jnp.ndarray) -> jnp.ndarray:
    return v + jax.lax.stop_gradient(jnp.round(v) - v)


def _round_away_st(v: jnp.ndarray) -> jnp.ndarray:
    """Round half away from zero, as libjpeg quantises coefficients; the identity for gradients."""
    return v + jax.lax.stop_gradient(jnp.sign(v) * jnp.floor(jnp.abs(v) + 0.5) - v)


def _floor_st(v: jnp.ndarray) -> jnp.ndarray:
    return v + jax.lax.stop_gradient(jnp.floor(v) - v)


def _blocks_round_trip(plane: jnp.ndarray, steps: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W) level-shifted samples, H and W multiples of 8, through DCT, quantisation by
    ``steps`` ((N, 8, 8)) and the inverse DCT; the decoded samples, clamped to 0..255."""
    n, h, w = plane.shape
    blocks = plane.reshape(n, h // 8, 8, w // 8, 8)
    c = jnp.asarray(_dct_matrix())
    coef = jnp.einsum("ua,vb,nyaxb->nyuxv", c, c, blocks, precision=_EXACT)
    s = steps[:, None, :, None, :]
    coef = _round_away_st(coef / s) * s
    back = jnp.einsum("ua,vb,nyuxv->nyaxb", c, c, coef, precision=_EXACT).reshape(n, h, w)
    return jnp.clip(_straight_through_round(back + 128.0), 0.0, 255.0)


def _mix(x: jnp.ndarray, matrix: np.ndarray) -> jnp.ndarray:
    """(..., 3) colours times the 3x3 ``matrix`` (rows: output channels), as nine multiply-adds in
    float32: XLA:CPU's dot on a contraction of 3 took 10 times as long on a 1088-pixel canvas."""
    parts = [x[..., c] for c in range(3)]
    return jnp.stack([sum(float(m) * p for m, p in zip(row, parts)) for row in matrix], axis=-1)


def _pad_to(x: jnp.ndarray, multiple: int, axes=(1, 2)) -> jnp.ndarray:
    pads = [(0, 0)] * x.ndim
    for a in axes:
        pads[a] = (0, -x.shape[a] % multiple)
    return jnp.pad(x, pads, mode="edge")


def _downsample_2x2(plane: jnp.ndarray) -> jnp.ndarray:
    """libjpeg's ``h2v2_downsample``: (a + b + c + d + bias) >> 2 with bias 1, 2, 1, 2, ... along
    each row, so that rounding does not drift one way. (N, 2h, 2w) -> (N, h, w)."""
    n, h2, w2 = plane.shape
    total = plane.reshape(n, h2 // 2, 2, w2 // 2, 2).sum(axis=(2, 4))
    bias = jnp.asarray(1.0 + (np.arange(w2 // 2) % 2), plane.dtype)
    return _floor_st((total + bias) / 4.0)


def _fancy_upsample_2x2(plane: jnp.ndarray, hc, wc) -> jnp.ndarray:
    """libjpeg's ``h2v2_fancy_upsample`` of (N, H/2, W/2) decoded chroma samples, of which the first
    ``hc`` rows and ``wc`` columns are the image's (ints, or (N,) per image), to (N, H, W): each output
    row mixes its nearer input row 3:1 with the next one out (the image's edge repeated), then the
    same along the row, with rounding biases 8 and 7 over 16. Outputs past the image are not used."""
    n, h2, w2 = plane.shape
    hc = jnp.broadcast_to(jnp.asarray(hc), (n,))[:, None, None]
    wc = jnp.broadcast_to(jnp.asarray(wc), (n,))[:, None, None]
    rows_at = jnp.arange(h2)[None, :, None]
    up = jnp.concatenate([plane[:, :1], plane[:, :-1]], axis=1)
    down = jnp.where(rows_at < hc - 1, jnp.concatenate([plane[:, 1:], plane[:, -1:]], axis=1), plane)
    # Rows: output 2i takes 3 * row i + row i-1, output 2i+1 takes 3 * row i + row i+1 (sums x4).
    rows = jnp.stack([3.0 * plane + up, 3.0 * plane + down], axis=2).reshape(n, 2 * h2, w2)
    cols_at = jnp.arange(w2)[None, None, :]
    left = jnp.concatenate([rows[:, :, :1], rows[:, :, :-1]], axis=2)
    right = jnp.where(cols_at < wc - 1, jnp.concatenate([rows[:, :, 1:], rows[:, :, -1:]], axis=2), rows)
    even = _floor_st((3.0 * rows + left + 8.0) / 16.0)
    odd = _floor_st((3.0 * rows + right + 7.0) / 16.0)
    return jnp.stack([even, odd], axis=3).reshape(n, 2 * h2, 2 * w2)


@jax.custom_vjp
def _repeat_edges(x, valid):
    """(N, H, W, C) with every row past each image's ``valid`` height (and column past its width)
    a copy of its last one, as libjpeg pads an image to whole blocks; the gradient of the copies
    goes back to the edge they came from."""
    for axis, n_valid in ((1, valid[:, 0]), (2, valid[:, 1])):
        shape = [-1 if a == axis else 1 for a in range(x.ndim)]
        at = jnp.arange(x.shape[axis]).reshape(shape)
        last = n_valid.reshape([-1] + [1] * (x.ndim - 1)) - 1
        edge = jnp.take_along_axis(x, jnp.broadcast_to(last, [x.shape[0]] + [1 if a == axis else x.shape[a] for a in range(1, x.ndim)]), axis=axis)
        x = jnp.where(at <= last, x, edge)
    return x


def _repeat_edges_fwd(x, valid):
    return _repeat_edges(x, valid), valid


def _fold_edge(g, n_valid, axis):
    """``g`` along ``axis`` with everything at and past ``n_valid - 1`` summed into that last valid
    index and zero beyond: the transpose of repeating the edge."""
    at = jnp.arange(g.shape[axis]).reshape([-1 if a == axis else 1 for a in range(g.ndim)])
    n_valid = n_valid.reshape([-1] + [1] * (g.ndim - 1))
    tail = jnp.sum(jnp.where(at >= n_valid - 1, g, 0.0), axis=axis, keepdims=True)
    return jnp.where(at < n_valid - 1, g, jnp.where(at == n_valid - 1, tail, 0.0))


def _repeat_edges_bwd(valid, g):
    g = _fold_edge(_fold_edge(g, valid[:, 1], 2), valid[:, 0], 1)
    return g, np.zeros(valid.shape, jax.dtypes.float0)


_repeat_edges.defvjp(_repeat_edges_fwd, _repeat_edges_bwd)


def jpeg_round_trip(x01: jnp.ndarray, quality, subsampling: str = "4:4:4", valid=None) -> jnp.ndarray:
    """Encode and decode (N, H, W, 3) pixels in [0, 1] as baseline JPEG; returns (N, H, W, 3)
    pixels in [0, 1] on the uint8 lattice (values k/255).

    ``quality`` in 1..100: a Python int, or an int array, scalar or (N,) for one quality per image
    (traced values work, so one compiled program serves every quality). ``subsampling``: "4:4:4"
    (what :func:`ppjax.io.write_image` writes) or "4:2:0" (Pillow's and libjpeg's default).
    Sizes that are not multiples of the block are padded by repeating the last row and column, as
    the encoder does, and cropped back.

    ``valid``: (N, 2) ints, each image's height and width at the top left of a larger canvas
    (:mod:`ppjax.ops.canvas`): each image is then encoded as if alone (its own edge repeated to
    whole blocks, its own chroma edge when upsampling), and the pixels past it are not meaningful.
    """
    if subsampling not in SUBSAMPLING:
        raise ValueError(f"JPEG subsampling must be one of {', '.join(SUBSAMPLING)}, got {subsampling!r}")
    if isinstance(quality, (int, np.integer)) and not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    n, h, w, _ = x01.shape
    tables = jnp.broadcast_to(_tables(jnp.asarray(quality, jnp.int32)), (n, 2, 8, 8))
    mcu = 16 if subsampling == "4:2:0" else 8
    if valid is None:
        x = _pad_to(x01 * 255.0, mcu)
        valid = jnp.broadcast_to(jnp.array([h, w], jnp.int32), (n, 2))
    else:
        valid = jnp.asarray(valid, jnp.int32)
        x = _pad_to(_repeat_edges(x01 * 255.0, valid), mcu)
    # Every stage works on integers in libjpeg; rounding them here keeps the forward value close.
    ycc = _mix(x, _RGB_TO_YCC) + jnp.array([0.0, 128.0, 128.0])
    ycc = jnp.clip(_straight_through_round(ycc), 0.0, 255.0)
    luma = _blocks_round_trip(ycc[..., 0] - 128.0, tables[:, 0])
    chroma = []
    for d in (1, 2):
        plane = ycc[..., d]
        if subsampling == "4:2:0":
            small = _pad_to(_downsample_2x2(plane), 8)
            decoded = _blocks_round_trip(small - 128.0, tables[:, 1])
            plane = _fancy_upsample_2x2(decoded, (valid[:, 0] + 1) // 2, (valid[:, 1] + 1) // 2)
        else:
            plane = _blocks_round_trip(plane - 128.0, tables[:, 1])
        chroma.append(plane[:, :h, :w])
    back = jnp.stack([luma[:, :h, :w], *chroma], axis=-1) - jnp.array([0.0, 128.0, 128.0])
    rgb = _mix(back, _YCC_TO_RGB)
    rgb = jnp.clip(_straight_through_round(rgb), 0.0, 255.0)
    return rgb / 255.0
