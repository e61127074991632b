"""The jitted program of the pixel methods on a batch: attack, round to the uint8 lattice, and
sign steps of 1/255 on the lattice where an image lacks the margin; with the leads and labels
through the channel that the edit methods' program (:mod:`ppjax.protect.edit_run`) shares.

Pixels are float32 (N, H, W, 3) in [0, 1]; under the social channel a batch is a stack of canvases
with its :class:`~ppjax.ops.canvas.Geometry`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppjax import attacks
from ppjax.attacks.loop import seen_period
from ppjax.protect.lattice import quantise255

__all__ = ["smallest_lead", "reference_labels", "run_pixel"]


def smallest_lead(targets, x01, labels, draws=None, keys=None, x0=None, geometry=None, seen=None):
    """(N,) smallest lead over the targets; with ``draws``, over the channel's draws of one whole
    cycle of steps (a ``lax.map``), each against the original ``x0`` through the same draw (its
    classes ``seen`` from :func:`ppjax.attacks.loop.seen_period` when given)."""
    if draws is None:
        return attacks.objective_and_lead(targets, x01, labels)[1]
    lead_at = attacks.lead_through(draws, targets)

    def at(step):
        now = None if seen is None else jax.tree_util.tree_map(lambda a: a[step % draws.period], seen)
        return lead_at(x01, x0, labels, keys, step, geometry, now)

    return jnp.min(jax.lax.map(at, jnp.arange(draws.cycle)), axis=0)


def reference_labels(targets, x01, draws, geometry):
    """Each target's top-1 class on the original, seen through the channel's reference view."""
    seen = x01 if draws is None else draws.reference(x01, geometry)
    return tuple(jnp.argmax(t.apply(t.variables, seen), axis=-1) for t in targets)


def run_pixel(p, variables, keys, x01, geometry, start, attack_steps, refine_steps, exact=False):
    """For protector ``p``: attack for ``attack_steps`` (0: take ``start``, what was written last,
    instead), round to the lattice, and where an image lacks the margin take up to ``refine_steps``
    sign steps of 1/255 on the lattice. (protected batch, labels, (N,) smallest lead of the result
    over the targets and one cycle of the channel's draws, in logits: positive where protected as
    computed). From ``start`` equal to that result, a call for an image whose lead was over the
    margin returns it unchanged: the same draws give it the same leads, and it takes no step."""
    targets, terms = p._bound(variables)
    draws = p._draws(exact)
    valid = None if geometry is None else geometry.valid
    keys = attacks.per_image_keys(keys, x01.shape[0])
    x0_255 = jnp.rint(x01 * 255.0)
    labels = reference_labels(targets, x01, draws, geometry)
    seen = None if draws is None else seen_period(draws, targets, x01, keys, geometry)
    # The perceptual budget's view of the original, once: the attack, the lattice's steps and each
    # settling round's fit all read it (x01 holds whole levels, so it is x0_255's exactly).
    context = None if p.perceptual is None else attacks.budget_context(p.perceptual, x01, None if geometry is None else geometry.scale)
    attack = p._attack(targets, terms, draws, context)
    if draws is None:  # the exact channel, own-size batches: every method, those with loops of their own too
        attacked = attack(keys, x01, labels)
    else:
        attacked = attack(keys, x01, labels, geometry=geometry, steps=attack_steps, seen=seen)
    x = jnp.where(attack_steps > 0, attacked, start)
    refine = p._lattice_refinement(targets, draws, context=context)

    def settle(carry):
        # Round 0: the attack's result on the lattice. Round 1, only where some image lacks the
        # margin there: sign steps of 1/255 from it, on the lattice (images already protected
        # with margin are left as they are). One traced copy of the lead serves both.
        rounds, x, _ = carry
        x = jax.lax.cond(
            rounds > 0, lambda x: refine(keys, x01, labels, start=x, geometry=geometry, steps=refine_steps, seen=seen), lambda x: x, x
        )  # fmt: skip
        q = quantise255(x, x0_255, p.eps, p.min_psnr, valid, p.perceptual, context) / 255.0
        return rounds + 1, q, smallest_lead(targets, q, labels, draws, keys, x01, geometry, seen)

    def again(carry):
        rounds, _, lead = carry
        return (rounds == 0) | ((rounds == 1) & jnp.any(lead <= p.margin) & (refine_steps > 0))

    _, q, lead = jax.lax.while_loop(again, settle, (0, x, jnp.zeros(x.shape[0], jnp.float32)))
    return q, labels, lead
