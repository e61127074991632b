"""A perceptual budget: how far each pixel may move, measured in CIEDE2000, and which way is cheapest.

An L-infinity ball treats the three sRGB channels alike, so most of a sign-step perturbation is a
change of colour (independent signs per channel), and a change of colour in a grey or dark pixel is
what the eye sees first: on 12 shared photos protected at the default, the change's channel mean
(its luminance part) alone was at a mean CIEDE2000 of 0.49, the whole change at 2.07. The parts here
let an attack measure its change the way the eye does:

- :func:`local_metric`: per pixel, the 3x3 matrix ``G`` with CIEDE2000(x0, x0 + d/255)^2 ~ d^T G d
  for a small change ``d`` in 1/255 units, from CIEDE2000's own weights at the pixel.
- :func:`allowance`: per pixel, the CIEDE2000 a change may reach there (a just-noticeable-difference
  map): ``flat`` on flat mid-tones, up to ``busy`` in busy texture (texture masking), less in dark
  surroundings (the flat part as Weber's law on the screen's light asks, :func:`weber_adaptation`;
  texture's extra by :func:`luminance_adaptation`) and in very bright ones.
- :func:`cheapest_direction`: per pixel, the change of unit (modelled) CIEDE2000 that raises a
  linear objective most: ``G^-1 g / sqrt(g^T G^-1 g)``, the steepest ascent under this metric.
- :func:`scale_to_allowance`: a change scaled down per pixel to its allowance, as modelled (the
  attack's steps); :func:`fit_levels`: whole levels whose *exact* CIEDE2000 is within it (the
  bytes written).

Pixels are float (..., H, W, 3) in [0, 1]; allowances and CIEDE2000 are in CIEDE2000 units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.ops.metrics import D65_WHITE, SRGB_TO_XYZ, a_stretch, ciede2000_weights, delta_e_2000, positive_power, srgb_to_lab

__all__ = [
    "WINDOW", "REACH", "SYMMETRIC", "FIT_PASSES", "local_metric", "modelled", "inverse_metric", "cheapest_direction", "gradient_size",
    "SCREEN_FLARE", "allowance", "allowance_inside", "allowance_of_lightness", "texture_masking", "luminance_adaptation", "weber_adaptation",
    "scale_to_allowance", "fit_levels",
]  # fmt: skip

#: Side of the square window (pixels) whose L* statistics set texture masking and adaptation.
WINDOW = 7
#: How far (pixels) a pixel's allowance looks: two windows' half sides (the local mean, then the
#: deviations around it).
REACH = 2 * (WINDOW // 2)
#: The local RMS deviation of L* (L* units) at which texture masking gives half of its extra allowance.
TEXTURE_HALF = 6.0
#: Below this local mean L* texture masking's extra allowance shrinks (down to :data:`DARK_FACTOR`
#: at black; a flat area's own shrinks further, :func:`weber_adaptation`), and above
#: :data:`BRIGHT_L` the whole allowance towards :data:`BRIGHT_FACTOR` at white: noise in shadows
#: shows when a phone brightens a photo, and a flat sky or wall near white shows every speck.
DARK_L, DARK_FACTOR = 25.0, 0.6
BRIGHT_L, BRIGHT_FACTOR = 85.0, 0.75
#: The luminance a screen shows at black, as a fraction of its white (its own black level and the
#: room's light it reflects). A change is seen by its Weber contrast on the screen: its change of
#: relative luminance over the local luminance plus this (:mod:`ppjax.ops.mottle` uses the same).
SCREEN_FLARE = 0.01
#: The local mean L* at and above which CIEDE2000's lightness weighting is taken as it is: its S_L
#: was fitted on a mid-grey surround, where a lightness step is seen best.
WEBER_L = 50.0
#: Passes of :func:`fit_levels` over the pixels still over their allowance (each one an exact
#: CIEDE2000 of the whole array: on real changes the first fits nearly all).
FIT_PASSES = 3


_XYZ = np.asarray(SRGB_TO_XYZ, np.float32)
_WHITE = np.asarray(D65_WHITE, np.float32)


#: The order of a symmetric 3x3 matrix's six entries in :func:`local_metric`'s planes.
SYMMETRIC = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _entry(sym: jnp.ndarray, i: int, j: int) -> jnp.ndarray:
    return sym[SYMMETRIC.index((min(i, j), max(i, j)))]


def local_metric(x0: jnp.ndarray) -> jnp.ndarray:
    """(6, ...) the symmetric ``G`` of each pixel of (..., 3) sRGB ``x0`` in [0, 1], as planes of
    its entries in :data:`SYMMETRIC` order: CIEDE2000(x0, x0 + d/255)^2 ~ d^T G d for a small
    change ``d`` in 1/255 units. CIEDE2000's own weights at the pixel (lightness by S_L; chroma and
    hue by S_C and S_H along the pixel's hue, with the a* axis stretched by 1 + G and the blue
    region's rotation R_T; a grey's colour changes weighed alike every way), carried to sRGB by
    the Jacobian of the CIELAB conversion. Planes, not (..., 3, 3): XLA:CPU runs per-pixel
    arithmetic on planes as fused vector loops, and 3x3 products on the innermost axes several
    times slower. Each power is taken once (as exp-log) and the derivatives come from it, and the
    hue's cosines from the unit vector (a', b) / C' rather than from its angle: XLA:CPU's float
    powers and cosines are scalar code, and they were most of this function's time."""
    v = jnp.clip(x0, 0.0, 1.0)
    low = v <= 0.04045
    base = (jnp.maximum(v, 0.04045) + 0.055) / 1.055
    high = positive_power(base, 2.4)
    linear = jnp.where(low, v / 12.92, high)
    slope = jnp.where(low, 1.0 / 12.92, (2.4 / 1.055) * high / base)  # d linear / d v
    xyz_of = _XYZ / _WHITE[:, None]
    eps = 216.0 / 24389.0
    # d Lab / d sRGB = LAB . diag(f'(xyz)) . xyz_of . diag(slope), one plane per entry.
    f, part = [], []
    for k in range(3):
        t = sum(float(xyz_of[k, c]) * linear[..., c] for c in range(3))
        above = t > eps
        t_safe = jnp.maximum(t, eps)
        cube_root = positive_power(t_safe, 1.0 / 3.0)
        f.append(jnp.where(above, cube_root, (24389.0 / 27.0 * t + 16.0) / 116.0))
        f_slope = jnp.where(above, cube_root / (3.0 * t_safe), 24389.0 / 27.0 / 116.0)  # d t^(1/3) / dt
        part.append([f_slope * float(xyz_of[k, c]) * slope[..., c] for c in range(3)])
    jl = [116.0 * part[1][c] for c in range(3)]
    ja = [500.0 * (part[0][c] - part[1][c]) for c in range(3)]
    jb = [200.0 * (part[1][c] - part[2][c]) for c in range(3)]

    lightness, a, b = 116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])
    stretch = a_stretch(jnp.sqrt(a * a + b * b))
    ap = stretch * a
    cp = jnp.sqrt(ap * ap + b * b)
    grey = cp < 1e-6
    ux, uy = jnp.where(grey, 1.0, ap / jnp.where(grey, 1.0, cp)), jnp.where(grey, 0.0, b / jnp.where(grey, 1.0, cp))
    sl, sc, sh, rt = ciede2000_weights(lightness, cp, jnp.degrees(jnp.arctan2(b, ap)) % 360.0, (ux, uy))
    # The (a', b) form: chroma along u = (ux, uy), hue along n = (-uy, ux), and R_T's cross term.
    inv_c, inv_h, cross = 1.0 / (sc * sc), 1.0 / (sh * sh), rt / (sc * sh)
    w00 = ux * ux * inv_c + uy * uy * inv_h - cross * ux * uy
    w01 = ux * uy * (inv_c - inv_h) + 0.5 * cross * (ux * ux - uy * uy)
    w11 = uy * uy * inv_c + ux * ux * inv_h + cross * ux * uy
    # In (L, a, b): a' = stretch * a.
    wll, waa, wab, wbb = 1.0 / (sl * sl), stretch * stretch * w00, stretch * w01, w11
    scale = 1.0 / 255.0**2
    return jnp.stack([
        scale * (wll * jl[i] * jl[j] + waa * ja[i] * ja[j] + wab * (ja[i] * jb[j] + jb[i] * ja[j]) + wbb * jb[i] * jb[j])
        for i, j in SYMMETRIC
    ])  # fmt: skip


def modelled(d: jnp.ndarray, metric: jnp.ndarray) -> jnp.ndarray:
    """(...,) the CIEDE2000 ``sqrt(d^T G d)`` of changes ``d`` (..., 3; 1/255 units) under
    :func:`local_metric`'s ``metric`` (6, ...)."""
    q = sum(_entry(metric, i, j) * d[..., i] * d[..., j] * (1.0 if i == j else 2.0) for i, j in SYMMETRIC)
    return jnp.sqrt(jnp.maximum(q, 0.0))


def _box(a: jnp.ndarray, side: int) -> jnp.ndarray:
    """Mean over each whole ``side`` x ``side`` window of (..., H, W): (..., H - side + 1, W - side + 1)."""
    for axis in (a.ndim - 2, a.ndim - 1):
        n = a.shape[axis] - side + 1
        a = sum(jax.lax.slice_in_dim(a, k, k + n, axis=axis) for k in range(side)) / side
    return a


def texture_masking(lightness: jnp.ndarray) -> jnp.ndarray:
    """(..., H - 2 REACH, W - 2 REACH) in [0, 1): how busy each pixel's surroundings are, for L*
    given with :data:`REACH` pixels around what is wanted. From ``s``, the RMS over a
    :data:`WINDOW` window of L*'s deviation from its local mean: ``s / (s + TEXTURE_HALF)``. (The
    deviation is squared before averaging, not E[L^2] - E[L]^2, which float32 cancels to noise
    on flat areas.)"""
    half = WINDOW // 2
    deviation = lightness[..., half:-half, half:-half] - _box(lightness, WINDOW)
    s = jnp.sqrt(_box(deviation * deviation, WINDOW))
    return s / (s + TEXTURE_HALF)


def luminance_adaptation(mean_lightness: jnp.ndarray) -> jnp.ndarray:
    """(..., H, W) factor in (0, 1] of the local mean L* for texture masking's extra allowance:
    :data:`DARK_FACTOR` at black rising linearly to 1 at :data:`DARK_L`, 1 up to :data:`BRIGHT_L`,
    then down to :data:`BRIGHT_FACTOR` at white."""
    dark = DARK_FACTOR + (1.0 - DARK_FACTOR) * jnp.clip(mean_lightness / DARK_L, 0.0, 1.0)
    return dark * _bright_adaptation(mean_lightness)


def _weber_per_delta_e(lightness: jnp.ndarray) -> jnp.ndarray:
    """The Weber contrast on the screen (change of relative luminance over the luminance plus
    :data:`SCREEN_FLARE`) of a lightness change of one CIEDE2000 on a flat grey of L* ``lightness``."""
    big = lightness > 8.0
    f = (lightness + 16.0) / 116.0
    y = jnp.where(big, f * f * f, lightness / 903.3)
    dy_dl = jnp.where(big, 3.0 * f * f / 116.0, 1.0 / 903.3)  # d Y / d L*
    d = lightness - 50.0
    # CIEDE2000's S_L (one CIEDE2000 is S_L in L*), as ciede2000_weights has it; not shared with it,
    # because its products round in another order and calling it changed the written bytes.
    s_l = 1.0 + 0.015 * d * d / jnp.sqrt(20.0 + d * d)
    return s_l * dy_dl / (y + SCREEN_FLARE)


def weber_adaptation(mean_lightness: jnp.ndarray) -> jnp.ndarray:
    """(..., H, W) factor in (0, 1] of the local mean L* for a flat area's allowance: below
    :data:`WEBER_L`, what makes a lightness change of the allowance as visible as on mid-grey by
    Weber's law on the screen's light (its Weber contrast over the local luminance plus
    :data:`SCREEN_FLARE` the same); 1 above. CIEDE2000 weighs a dark lightness change as if seen on a
    mid-grey surround: on a black background one CIEDE2000 is about 4 times the Weber contrast of
    one on mid-grey, and in a photo's dark areas, to which the eye adapts, that shows (about 0.22
    at black, 0.44 at L* 10, 0.53 at 25, 0.77 at 40)."""
    ell = jnp.clip(mean_lightness, 0.0, WEBER_L)
    return jnp.minimum(1.0, _weber_per_delta_e(jnp.float32(WEBER_L)) / _weber_per_delta_e(ell))


def _bright_adaptation(mean_lightness: jnp.ndarray) -> jnp.ndarray:
    return 1.0 - (1.0 - BRIGHT_FACTOR) * jnp.clip((mean_lightness - BRIGHT_L) / (100.0 - BRIGHT_L), 0.0, 1.0)


def allowance_inside(x0: jnp.ndarray, flat: float, busy: float) -> jnp.ndarray:
    """(..., H - 2 REACH, W - 2 REACH): :func:`allowance` of the pixels of (..., H, W, 3) ``x0``
    at least :data:`REACH` from its edges, from ``x0`` alone (so a tile with that margin gives
    exactly the allowance of its part of the whole photo)."""
    return allowance_of_lightness(srgb_to_lab(x0)[..., 0], flat, busy)


def allowance_of_lightness(lightness: jnp.ndarray, flat: float, busy: float) -> jnp.ndarray:
    """:func:`allowance_inside` from the L* plane (..., H, W) of the original."""
    inner = REACH - WINDOW // 2
    mean = _box(lightness[..., inner:-inner, inner:-inner], WINDOW)
    # A flat area shows a change against its own light (Weber); texture's extra is masked by the
    # texture, and keeps the milder adaptation (a dark textured area hides more than a dark flat one).
    base = flat * weber_adaptation(mean) * _bright_adaptation(mean)
    return base + (busy - flat) * texture_masking(lightness) * luminance_adaptation(mean)


def allowance(x0: jnp.ndarray, flat: float, busy: float) -> jnp.ndarray:
    """(..., H, W) CIEDE2000 each pixel of (..., H, W, 3) ``x0`` may change by: ``flat`` times
    :func:`weber_adaptation`, plus ``busy - flat`` times :func:`texture_masking` times
    :func:`luminance_adaptation` (both times the bright areas' factor), the photo's edge pixels
    repeated beyond it. From the original alone, never the change."""
    pads = [(0, 0)] * (x0.ndim - 3) + [(REACH, REACH), (REACH, REACH), (0, 0)]
    return allowance_inside(jnp.pad(x0, pads, mode="edge"), flat, busy)


def inverse_metric(metric: jnp.ndarray) -> jnp.ndarray:
    """(6, ...) the inverses of :func:`local_metric`'s symmetric positive matrices (adjugate over
    determinant, with a ridge of 1e-4 of the trace so a near-singular one stays finite)."""
    ridge = 1e-4 * (metric[0] + metric[3] + metric[5]) + 1e-12
    a, b, c, d, e, f = metric[0] + ridge, metric[1], metric[2], metric[3] + ridge, metric[4], metric[5] + ridge
    adj = jnp.stack([d * f - e * e, c * e - b * f, b * e - c * d, a * f - c * c, b * c - a * e, a * d - b * b])
    det = a * adj[0] + b * adj[1] + c * adj[2]
    return adj / det


def _inverse_times(g: jnp.ndarray, inverse: jnp.ndarray) -> tuple[list[jnp.ndarray], jnp.ndarray]:
    """(``G^-1 g`` as its three channels, ``g^T G^-1 g``) per pixel: what :func:`cheapest_direction`
    and :func:`gradient_size` are both made of."""
    v = [sum(_entry(inverse, i, j) * g[..., j] for j in range(3)) for i in range(3)]
    return v, sum(v[i] * g[..., i] for i in range(3))


def cheapest_direction(g: jnp.ndarray, inverse: jnp.ndarray) -> jnp.ndarray:
    """(..., 3): per pixel, ``G^-1 g / sqrt(g^T G^-1 g)`` for gradients ``g`` (..., 3) and
    ``inverse`` (6, ...; from :func:`inverse_metric`): the change of modelled CIEDE2000 1 (in 1/255
    units) that raises the objective most; zero where the gradient is."""
    v, length2 = _inverse_times(g, inverse)
    positive = length2 > 0
    norm = jnp.where(positive, jax.lax.rsqrt(jnp.where(positive, length2, 1.0)), 0.0)
    return jnp.stack([vi * norm for vi in v], -1)


def gradient_size(g: jnp.ndarray, inverse: jnp.ndarray) -> jnp.ndarray:
    """(...): per pixel, ``sqrt(g^T G^-1 g)`` for gradients ``g`` (..., 3) and ``inverse`` (6, ...):
    how fast the objective rises along :func:`cheapest_direction`, per unit of modelled CIEDE2000."""
    return jnp.sqrt(jnp.maximum(_inverse_times(g, inverse)[1], 0.0))


def scale_to_allowance(d: jnp.ndarray, metric: jnp.ndarray, limit: jnp.ndarray) -> jnp.ndarray:
    """Changes ``d`` (..., 3; 1/255 units) scaled down per pixel where their modelled CIEDE2000
    (:func:`modelled`) is over ``limit`` (...), to a hair under it. Scaling towards the original
    keeps every box around it (an L-infinity ball, [0, 1]) that held before."""
    size = modelled(d, metric)
    return d * jnp.where(size > limit, 0.995 * limit / jnp.maximum(size, 1e-12), 1.0)[..., None]


def fit_levels(q: jnp.ndarray, x0_255: jnp.ndarray, limit: jnp.ndarray, lab0: jnp.ndarray | None = None) -> jnp.ndarray:
    """Whole-level changes ``q`` (..., H, W, 3; 1/255 units, ``x0_255 + q`` in [0, 255]) made to
    keep each pixel's *exact* CIEDE2000 within ``limit`` (..., H, W), as the written bytes are
    measured. A pixel over it first takes one level back towards the original on as few of its
    channels as fit (of those, the one keeping the largest CIEDE2000): rounding a change that
    was fitted in float overshoots by at most half a level a channel, so this mostly keeps all
    but one level of it. A pixel still over is scaled by ``s`` = 0.95 ``limit`` / its CIEDE2000
    (close to proportional to scale) and truncated towards zero, so every pass shrinks it by at
    least a level; after :data:`FIT_PASSES` passes a pixel still over is left unchanged.
    Magnitudes only shrink, so every box and PSNR floor ``q`` kept still holds. ``lab0``: the
    original in CIELAB, when the caller has it.

    The passes run on the pixels over their allowance alone, gathered and taken
    :data:`FIT_CHUNK` at a time, as many chunks as there are pixels over: each pixel's fit is its
    own, so the result is the same as passes over the whole array, a pass costs about the pixels
    over instead of a whole exact CIEDE2000 of the array, and the program holds one chunk's
    temporaries, not the array's (XLA:CPU reserves memory for a branch even when it is not taken)."""
    lab0 = srgb_to_lab(x0_255 / 255.0) if lab0 is None else lab0  # once: each pass converts only the candidate
    size = delta_e_2000(lab0, srgb_to_lab((x0_255 + q) / 255.0))
    n = size.size
    chunk_size = min(FIT_CHUNK, n)
    over = (size > limit).reshape(-1)
    count = jnp.sum(over)
    flat = [q.reshape(n, 3), x0_255.reshape(n, 3), limit.reshape(n), lab0.reshape(n, 3), size.reshape(n)]  # _fit_passes's order
    at = jnp.nonzero(over, size=-(-n // chunk_size) * chunk_size, fill_value=0)[0]  # padded with pixel 0: its own fit, written back alike

    def chunk(k, out):
        idx = jax.lax.dynamic_slice_in_dim(at, k * chunk_size, chunk_size)
        return out.at[idx].set(_fit_passes(*(a[idx] for a in flat)))  # from the unfitted q: each pixel once

    return jax.lax.fori_loop(0, -(-count // chunk_size), chunk, flat[0]).reshape(q.shape)


#: How many of the pixels over their allowance :func:`fit_levels` fits at a time. Measured on the
#: 1088 canvas of two full-size photos, one run's fits found 0 to 11.4% of the pixels over (mostly
#: 1-6%); 1.8% of a full-size photo's after the carry-back, up to 28% of a smooth one's at 12 MP.
FIT_CHUNK = 8192


#: How far inside its allowance (CIEDE2000) a step back must land, so that another program's
#: float order never finds it over.
_HAIR = 1e-3
#: The one-level steps back :func:`fit_levels` tries first: each subset of the three channels,
#: fewest first.
_LEVEL_BACK = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)], np.float32)


def _level_back(q, x0_255, limit, lab0, size):
    """(q, size) with each pixel over its ``limit`` one level back towards the original on the
    fewest channels that fit (of those, keeping the largest CIEDE2000); unchanged where none fits."""
    best_q, best_key, best_size = q, jnp.full(size.shape, jnp.inf), size
    for step in _LEVEL_BACK:
        candidate = q - jnp.sign(q) * step
        this = delta_e_2000(lab0, srgb_to_lab((x0_255 + candidate) / 255.0))
        # The fewest channels, then the largest CIEDE2000.
        key = jnp.where((size > limit) & (this <= limit - _HAIR), step.sum() * 1e3 - this, jnp.inf)
        better = key < best_key
        best_q = jnp.where(better[..., None], candidate, best_q)
        best_key, best_size = jnp.where(better, key, best_key), jnp.where(better, this, best_size)
    return best_q, best_size


def _fit_passes(q, x0_255, limit, lab0, size):
    """:func:`fit_levels`'s steps back and passes, given each pixel's exact CIEDE2000 ``size``."""
    q, size = _level_back(q, x0_255, limit, lab0, size)

    def again(state):
        passes, _, _, fits = state
        return (passes < FIT_PASSES) & jnp.any(~fits)

    def shrink(state):
        passes, scale, size, fits = state
        scale = jnp.where(fits, scale, scale * jnp.minimum(0.95, 0.95 * limit / jnp.maximum(size, 1e-12)))
        candidate = jnp.trunc(q * scale[..., None])
        size = delta_e_2000(lab0, srgb_to_lab((x0_255 + candidate) / 255.0))
        return passes + 1, scale, size, fits | (size <= limit)

    state = (0, jnp.ones_like(limit), size, size <= limit)
    _, scale, _, fits = jax.lax.while_loop(again, shrink, state)
    out = jnp.where((scale < 1.0)[..., None], jnp.trunc(q * scale[..., None]), q)
    return jnp.where(fits[..., None], out, 0.0)
