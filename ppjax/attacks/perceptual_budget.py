"""The perceptual budget as attack parts: a projection and step rules that measure a change in
CIEDE2000 per pixel (:mod:`ppjax.ops.perceptual`), composed with the others like any ball and rule.

:class:`PerceptualBudget` holds the allowances. :func:`perceptual_ball` keeps every pixel within
its allowance (and within an outer L-infinity ball of ``eps``/255, and [0, 1]); the step rules move
each pixel along its cheapest direction instead of the sign of its gradient: a step of ``eps``
(1/255 units) takes a pixel to its whole allowance, as a sign step of ``eps`` takes it to the
L-infinity ball's face. With a ``focus`` the steps follow the gradient's size as well as its
direction (:func:`perceptual_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax.numpy as jnp
import optax

from ppjax.attacks.projections import Projection, linf_ball, region
from ppjax.ops import mottle, perceptual
from ppjax.ops.metrics import srgb_to_lab

__all__ = ["BudgetContext", "PerceptualBudget", "budget_context", "perceptual_ball", "perceptual_step", "perceptual_lattice_step"]


@dataclass(frozen=True)
class PerceptualBudget:
    """Per-pixel CIEDE2000 allowances: ``flat`` on a flat mid-tone area, rising to ``busy`` in busy
    texture (see :func:`ppjax.ops.perceptual.allowance`)."""

    flat: float = 1.0
    busy: float = 2.5
    #: The cap on the change's low-frequency luminance contrast on smooth areas (a fraction:
    #: :mod:`ppjax.ops.mottle`), or None for none.
    mottle: float | None = None
    #: How far each pixel's step follows the size of its gradient, in [0, 1] (:func:`perceptual_step`):
    #: 0 every pixel a step of its whole allowance over ``eps`` (the sign step's counterpart).
    focus: float = 0.0

    def __post_init__(self):
        if not 0.0 < self.flat <= self.busy:
            raise ValueError(f"the perceptual budget needs 0 < flat <= busy (CIEDE2000), got flat {self.flat}, busy {self.busy}")
        if not 0.0 <= self.focus <= 1.0:
            raise ValueError(f"the step's focus is in [0, 1] (0: every pixel alike), got {self.focus}")
        if self.mottle is not None and not 0.0 < self.mottle < 1.0:
            raise ValueError(f"the mottle cap is a contrast in (0, 1), got {self.mottle}")

    def limit(self, x0: jnp.ndarray) -> jnp.ndarray:
        """(N, H, W) allowance of each pixel of (N, H, W, 3) originals in [0, 1]."""
        return perceptual.allowance(x0, self.flat, self.busy)


class BudgetContext(NamedTuple):
    """What a perceptual budget needs of the originals, computed once per program call: the
    attack's ball and step rule, the lattice's steps and the fit of the bytes all read it (each
    computing its own cost 0.1-0.2 s a call on a 1088 canvas, the later ones inside loops where
    the compiler cannot share them)."""

    metric: jnp.ndarray  # (6, N, H, W): :func:`ppjax.ops.perceptual.local_metric`
    limit: jnp.ndarray  # (N, H, W): the allowances
    inverse: jnp.ndarray  # (6, N, H, W): :func:`ppjax.ops.perceptual.inverse_metric` of ``metric``
    lab: jnp.ndarray  # (N, H, W, 3): the originals in CIELAB
    slope: jnp.ndarray | None = None  # (N, H, W, 3): :func:`ppjax.ops.mottle.luminance_slope`, with a mottle cap
    cap: jnp.ndarray | None = None  # (N, H, W): :func:`ppjax.ops.mottle.mottle_cap`, with a mottle cap
    kernel: jnp.ndarray | None = None  # (N, K): :func:`ppjax.ops.mottle.kernels`, with a mottle cap


def budget_context(budget: PerceptualBudget, x0: jnp.ndarray, scale=None) -> BudgetContext:
    """:class:`BudgetContext` of (N, H, W, 3) originals ``x0`` in [0, 1]; ``scale`` (N,): each
    one's size over its photo's (None: 1), for the mottle cap's low-pass."""
    metric = perceptual.local_metric(x0)
    context = BudgetContext(metric, budget.limit(x0), perceptual.inverse_metric(metric), srgb_to_lab(x0))
    if budget.mottle is None:
        return context
    kernel = mottle.kernels(jnp.ones(x0.shape[0]) if scale is None else scale)
    return context._replace(slope=mottle.luminance_slope(x0), cap=mottle.mottle_cap(x0, budget.mottle), kernel=kernel)


def perceptual_ball(budget: PerceptualBudget, eps: float, context: BudgetContext | None = None) -> Projection:
    """Each pixel within ``eps``/255 per channel, [0, 1], and its CIEDE2000 allowance around the
    original (as modelled: the bytes written are fitted exactly, by
    :func:`ppjax.protect.lattice.quantise255`); the change stays zero outside ``valid``. The boxes
    first, then the scaling towards the original (which keeps them): clipping a channel after the
    scaling could turn a change of lightness into a change of colour. ``context``: the originals'
    :func:`budget_context` when the caller has it (then every ``x0`` given must be those originals)."""
    boxes = linf_ball(eps)

    def prepare(x0):
        return context if context is not None else budget_context(budget, x0)  # under jit, unread parts are not computed

    def fitted(x, x0, ctx, valid):
        ctx = prepare(x0) if ctx is None else ctx
        d = (x - x0) * 255.0
        if budget.mottle is not None:  # then the boxes again: the grey change taken away may cross them
            d = mottle.cap_change(d, ctx.slope, ctx.cap, ctx.kernel)
            d = jnp.clip(d, jnp.maximum(-eps, -x0 * 255.0), jnp.minimum(eps, (1.0 - x0) * 255.0))
            mask = region(valid, d.shape)
            d = d if mask is None else d * mask
        return x0 + perceptual.scale_to_allowance(d, ctx.metric, ctx.limit) / 255.0

    def project(x, x0, valid=None, ctx=None):
        return fitted(boxes.project(x, x0, valid), x0, ctx, valid)

    def sample(key, x0, valid=None, ctx=None):
        return fitted(boxes.sample(key, x0, valid), x0, ctx, valid)

    return Projection(project, sample, prepare)


class _Metric(NamedTuple):
    inverse: jnp.ndarray  # (6, N, H, W): :func:`ppjax.ops.perceptual.inverse_metric`
    scale: jnp.ndarray  # (N, H, W, 1): the allowance over eps


def perceptual_step(budget: PerceptualBudget, eps: float, context: BudgetContext | None = None) -> optax.GradientTransformation:
    """The sign step's counterpart under ``budget``: per pixel, the cheapest direction
    (:func:`ppjax.ops.perceptual.cheapest_direction`) times the pixel's allowance over ``eps``, so
    that a step of ``eps`` (1/255 units) is a change of the whole allowance, as modelled. The
    metric and the allowance come from the original, once per attack (from ``context``, the
    originals' :func:`budget_context`, when given).

    With ``budget.focus`` F > 0 each pixel's step is also weighted by its gradient's size in the
    metric to the power F (:func:`ppjax.ops.perceptual.gradient_size`), over the photo's root mean
    square of those weights: the same step size on average, more where the objective rises
    fastest per unit of CIEDE2000 (F = 1: an L2 step's allocation; the ball still caps each pixel).
    Where the PSNR floor binds, as it does on most photos, a sign-like step spends the budget alike
    on every pixel and the floor scales it all down; a focused one spends more where it pays."""
    focus = budget.focus

    def init(x0):
        ctx = context if context is not None else budget_context(budget, x0)
        return _Metric(ctx.inverse, ctx.limit[..., None] / eps)

    def update(g, state, params=None):
        step = perceptual.cheapest_direction(g, state.inverse) * state.scale
        if focus:
            step = step * _focus_weights(perceptual.gradient_size(g, state.inverse), focus)[..., None]
        return step, state

    return optax.GradientTransformation(init, update)


def _focus_weights(size: jnp.ndarray, focus: float) -> jnp.ndarray:
    """(N, H, W) ``size`` ** ``focus`` over its root mean square per image, taken over the pixels
    with a gradient (the canvas's padding has none); zero where ``size`` is."""
    w = jnp.where(size > 0, size, 0.0) ** focus
    moving = jnp.sum((size > 0).astype(size.dtype), axis=(1, 2), keepdims=True)
    rms = jnp.sqrt(jnp.sum(w * w, axis=(1, 2), keepdims=True) / jnp.maximum(moving, 1.0))
    return jnp.where(rms > 0, w / jnp.where(rms > 0, rms, 1.0), 0.0)


def perceptual_lattice_step(context: BudgetContext | None = None) -> optax.GradientTransformation:
    """Whole-level steps along the cheapest direction: per pixel, that direction scaled so its
    largest channel is one level, then rounded (a change of lightness is one level on all three
    channels, where a sign step would be three independent ones). ``context``: as for
    :func:`perceptual_step`."""

    def init(x0):  # the inverse metric alone: every step is one level, whatever the allowance
        return context.inverse if context is not None else perceptual.inverse_metric(perceptual.local_metric(x0))

    def update(g, state, params=None):
        v = perceptual.cheapest_direction(g, state)
        top = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
        return jnp.where(top > 0, jnp.rint(v / jnp.where(top > 0, top, 1.0)), 0.0), state

    return optax.GradientTransformation(init, update)
