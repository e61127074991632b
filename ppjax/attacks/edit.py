"""Adversarial edits: the few parameters of a photo edit (:mod:`ppjax.edits`) optimised, instead of
pixels, so that the classifiers no longer see the scene (the ACE / AdvCF, EdgeFool and ColorFool
ideas as one loop, through the same channel draws and input diversity as the pixel attacks).

``attack(keys, x01, labels, params=None, geometry=None, steps=None, seen=None) -> params`` over a
batch: per-image parameters (a leading N axis), found by Adam on each slider's value over its half
range (so one learning rate suits sliders of every unit), kept inside the sliders' ranges after
every step. An image stops changing once it has led every target by ``stop_margin`` logits on
``channel.cycle`` steps in a row. ``params`` is where to start (a fitted look, or an earlier
round's result); None starts from the identity. ``detail``: the pipeline's
:meth:`~ppjax.edits.EditPipeline.detail` of ``x01``, when the caller has it already.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from ppjax.attacks.loop import _through, seen_period
from ppjax.attacks.objectives import Target, Term, weighted_terms
from ppjax.attacks.projections import per_image_keys, region
from ppjax.ops.metrics import delta_e_2000, srgb_to_lab

__all__ = ["edit_attack"]


def _per_image(mask, tree_a, tree_b):
    """``tree_a`` where ``mask`` (N,) holds, else ``tree_b``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), tree_a, tree_b)


def edit_attack(
    pipe,
    targets: Sequence[Target],
    *,
    steps: int,
    learning_rate: float = 0.1,
    reg: float = 0.0,
    max_delta_e: float | None = None,
    early_stop: bool = True,
    stop_margin: float = 0.0,
    terms: Sequence[Term] = (),
    channel: Callable | None = None,
    transfer=None,
) -> Callable:
    """The adversarial edit of :class:`ppjax.edits.EditPipeline` ``pipe`` against ``targets``.

    ``learning_rate``: Adam's, in units of the sliders' half ranges. ``reg``: weight of the mean
    squared normalised slider value (pulls towards no edit; 0: none). ``max_delta_e``: the largest
    mean CIEDE2000 between a photo and its edit (None: the sliders' ranges only): after every step
    an edit over it is scaled back towards none by the ratio (the colour change is close to
    proportional to the sliders), so the look stays an edit rather than a new palette. ``terms`` (appeal) see the
    edited image. ``channel`` and ``transfer`` as in :func:`ppjax.attacks.iterate`, of which only
    input diversity, scale copies and ghost networks apply to an edit (TI smoothing and momentum
    shape pixel steps).
    """
    targets, terms = tuple(targets), tuple(terms)
    diversity = None
    if transfer is not None and transfer.diversity:
        from ppjax.attacks.transfer import diverse_inputs

        def diversity(x, keys, step, valid):
            return diverse_inputs(x, keys, step, transfer.diversity, transfer.diversity_scale, valid)

    through = _through(channel, targets, diversity, *((transfer.scales, transfer.ghost) if transfer is not None else (1, 0.0)))
    cycle = getattr(channel, "cycle", 1)
    optimiser = optax.adam(learning_rate)
    max_steps = steps

    def attack(keys, x01, labels, params=None, geometry=None, steps=None, seen=None, detail=None):
        labels = tuple(labels)
        n = x01.shape[0]
        valid = None if geometry is None else jnp.asarray(geometry.valid)
        keys = per_image_keys(keys, n)
        u0 = pipe.normalised(pipe.batched(pipe.identity() if params is None else params, n))
        if detail is None:
            detail = pipe.detail(x01, valid)
        if channel is not None and seen is None:
            seen = seen_period(channel, targets, x01, keys, geometry)

        lab0 = srgb_to_lab(x01)
        inside = None if valid is None else region(valid, x01.shape)[..., 0]

        def delta_e(u):
            per_pixel = delta_e_2000(lab0, srgb_to_lab(pipe.apply(pipe.from_normalised(u), x01, valid, detail)))
            if inside is None:
                return jnp.mean(per_pixel, axis=(1, 2))
            return jnp.sum(per_pixel * inside, axis=(1, 2)) / jnp.sum(inside, axis=(1, 2))

        def within_budget(u):
            if max_delta_e is None:
                return u
            shrink = jnp.minimum(1.0, max_delta_e / jnp.maximum(delta_e(u), 1e-6))
            return jax.tree_util.tree_map(lambda a: a * shrink.reshape((-1,) + (1,) * (a.ndim - 1)), u)

        def loss(u, step, now):
            x = pipe.apply(pipe.from_normalised(u), x01, valid, detail)
            value, lead = through(x, x01, labels, keys, step, geometry, now)
            value = value + jnp.sum(weighted_terms(terms, x, x01))
            penalty = sum(jnp.sum(jnp.mean(a.reshape(n, -1) ** 2, axis=1)) for a in jax.tree_util.tree_leaves(u))
            return reg * penalty - value, lead

        grad = jax.grad(loss, has_aux=True)

        def cond(carry):
            i, _, _, done, _ = carry
            return (i < (max_steps if steps is None else steps)) & ~jnp.all(done)

        def body(carry):
            i, u, state, done, streak = carry
            now = None if channel is None else jax.tree_util.tree_map(lambda a: a[i % channel.period], seen)
            g, lead = grad(u, i, now)
            updates, state = optimiser.update(g, state, u)
            moved = within_budget(jax.tree_util.tree_map(lambda a, d: jnp.clip(a + d, -1.0, 1.0), u, updates))
            if early_stop:
                ok = lead > stop_margin
                streak = jnp.where(ok, streak + 1, 0)
                done = done | (streak >= cycle)
                u = _per_image(ok | done, u, moved)
            else:
                u = moved
            return i + 1, u, state, done, streak

        start = (0, u0, optimiser.init(u0), jnp.zeros(n, bool), jnp.zeros(n, jnp.int32))
        _, u, _, _, _ = jax.lax.while_loop(cond, body, start)
        return pipe.project(pipe.from_normalised(u))

    return attack
