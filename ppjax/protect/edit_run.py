"""The jitted program of the edit methods (:data:`ppjax.attacks.EDIT_METHODS`) on a canvas batch.

The edit's sliders are optimised through the channel's draws, the edited photo is rounded to the
uint8 lattice, and, for the hybrid ``edit+pgd``, sign steps of pixel noise within ``eps``/255 *of
the edited photo* (above the PSNR floor measured against it) follow where the edit alone lacks
the margin; then the same lattice refinement as the pixel methods. What is returned besides the
protected batch lets the caller apply the same edit to each full-resolution original
(:func:`ppjax.edits.apply_full`) and carry the hybrid's noise over as a residual.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppjax import attacks
from ppjax.attacks.loop import seen_period
from ppjax.edits import EditPipeline
from ppjax.protect.lattice import quantise255
from ppjax.protect.pixel_run import reference_labels, smallest_lead

__all__ = ["EditResult", "run_edit", "protect_edit"]


class EditResult(NamedTuple):
    """Per photo of a canvas batch: the sliders found (``{part: {slider: (N, ...)}}``), the edited
    batch on the lattice before any pixel noise ((N, S, S', 3) in [0, 1]), and clarity's
    guided-filter coefficients of the originals ((N, S, S', 2); None without a tone part)."""

    params: dict
    edited: jnp.ndarray
    coefficients: jnp.ndarray | None


def run_edit(p, variables, keys, x01, geometry, params, attack_steps, pixel_steps, exact=False):
    """(protected batch on the lattice, labels per target, protected-as-computed flags, the fields
    of an :class:`EditResult`)
    for protector ``p``: ``attack_steps`` edit steps from ``params`` (None: the identity), then for
    a hybrid up to ``pixel_steps`` pixel steps and ``p.lattice_steps`` lattice steps."""
    method = attacks.METHODS[p.method]
    pipe = EditPipeline(method.edit)
    targets, terms = p._bound(variables)
    draws = p._draws(exact)
    valid = None if geometry is None else geometry.valid
    keys = attacks.per_image_keys(keys, x01.shape[0])
    labels = reference_labels(targets, x01, draws, geometry)
    seen = None if draws is None else seen_period(draws, targets, x01, keys, geometry)
    coefficients = pipe.coefficients(x01, valid) if pipe.uses_detail else None
    detail = None if coefficients is None else pipe.detail_from(coefficients, x01)
    attack = p._attack(targets, terms, draws)
    found = attack(keys, x01, labels, params=params, geometry=geometry, steps=attack_steps, seen=seen, detail=detail)
    edited = jnp.rint(pipe.apply(found, x01, valid, detail) * 255.0) / 255.0
    q = edited
    if method.hybrid:
        q = _pixel_stage(p, targets, draws, keys, edited, labels, geometry, seen, pixel_steps)
    lead = smallest_lead(targets, q, labels, draws, keys, x01, geometry, seen)
    return q, labels, lead > 0.0, (found, edited, coefficients)  # a plain tuple: jax.export serialises it


def _pixel_stage(p, targets, draws, keys, edited, labels, geometry, seen, steps):
    """Sign steps (input diversity, TI smoothing and momentum as the protector's transfer says)
    within ``p.eps``/255 of ``edited`` where it lacks the margin, rounded to the lattice, then the
    lattice refinement; images already past the margin stay as they are."""
    valid = None if geometry is None else geometry.valid
    ball = attacks.with_psnr_floor(attacks.linf_ball(p.eps), p.min_psnr)
    noise = attacks.iterate(
        targets, attacks.sign_step(), ball, steps=p.steps, step_size=2.5 * p.eps / jnp.maximum(steps, 1), stop_margin=p.margin,
        channel=draws, transfer=p.transfer if p.transfer is not None and p.transfer.active else None,
    )  # fmt: skip
    x = noise(keys, edited, labels, geometry=geometry, steps=steps, seen=seen)
    q = quantise255(x, jnp.rint(edited * 255.0), p.eps, p.min_psnr, valid) / 255.0
    lead = smallest_lead(targets, q, labels, draws, keys, edited, geometry, seen)
    refine = p._lattice_refinement(targets, draws)

    def refined(q):
        stepped = refine(keys, edited, labels, start=q, geometry=geometry, seen=seen)
        return quantise255(stepped, jnp.rint(edited * 255.0), p.eps, p.min_psnr, valid) / 255.0

    return jax.lax.cond(jnp.any(lead <= p.margin), refined, lambda q: q, q)


def protect_edit(p, keys, x01, geometry, params=None, *, exact: bool):
    """Protector ``p``'s edit program on a canvas batch ((N, S, S', 3) in [0, 1], from
    :meth:`~ppjax.protect.Protector.layout`): (protected batch on the lattice, labels, flags,
    :class:`EditResult` as NumPy). ``params`` (per photo, an earlier round's): where the edit's
    search goes on from; None: from ``p.look``, or no edit."""
    x01 = jnp.asarray(x01, jnp.float32)
    n = x01.shape[0]
    pipe = p.pipeline
    if params is None:
        params = pipe.identity() if p.look is None else {part: p.look[part] for part in pipe.parts}
    start = pipe.batched(jax.tree_util.tree_map(jnp.asarray, params), n)
    pixel_steps = int(p.options.get("pixel_steps", attacks.METHODS[p.method].options.get("pixel_steps", 0)))
    geometry = jax.tree_util.tree_map(jnp.asarray, geometry)
    run = p._programs["run"]
    q, labels, ok, found = run(p.variables, keys, x01, geometry, start, jnp.int32(p.steps), jnp.int32(pixel_steps), exact=exact)
    p._warm.add((x01.shape[1:3], n, exact))
    return np.asarray(q), labels, np.asarray(ok), EditResult(*jax.tree_util.tree_map(np.asarray, found))
