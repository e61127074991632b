"""C&W-L2 (Carlini & Wagner 2017) with optax's Adam: the smallest change that protects, within a budget."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from ppjax.attacks.objectives import Target, Term, objective_and_lead, weighted_terms

__all__ = ["build_cw"]

_PER_IMAGE = (1, 2, 3)


def build_cw(
    targets: Sequence[Target],
    terms: Sequence[Term],
    *,
    eps: float,
    steps: int,
    early_stop: bool,
    stop_margin: float,
    c: float = 1.0,
    search_steps: int = 1,
    learning_rate: float = 0.1,
) -> Callable:
    """C&W-L2 (Carlini & Wagner 2017) with optax's Adam, capped at ``eps``/255 per pixel.

    Minimises ``||x - x0||^2 + c * max(stop_margin - lead, 0)`` minus the weighted terms, per image,
    over ``w`` with ``x = clip(x0 + eps/255 * tanh(w), 0, 1)`` (the tanh change of variables bounds
    every pixel's change by the budget, as the box does in the paper). Keeps, per image, the
    closest result whose lead exceeds ``stop_margin``. With ``search_steps`` > 1, ``c`` is searched
    per image: x10 while no success, then bisection. Runs all ``steps``: the point is the
    smallest change, not the first success (``early_stop`` does not apply). Pixel distances are in
    [0, 1] units.
    """

    targets, terms = tuple(targets), tuple(terms)
    r = eps / 255.0
    opt = optax.adam(learning_rate)

    def losses(w, x0, labels, c_img):
        x = jnp.clip(x0 + r * jnp.tanh(w), 0.0, 1.0)
        _, lead = objective_and_lead(targets, x, labels)
        dist = jnp.sum((x - x0) ** 2, axis=_PER_IMAGE)
        loss = dist + c_img * jnp.maximum(stop_margin - lead, 0.0) - weighted_terms(terms, x, x0)
        return jnp.sum(loss), (x, dist, lead)

    grad = jax.grad(losses, has_aux=True)

    def keep_best(x, dist, lead, best_x, best_d, found):
        better = (lead > stop_margin) & (dist < best_d)
        return jnp.where(better[:, None, None, None], x, best_x), jnp.where(better, dist, best_d), found | better

    def attack(key, x01, labels):
        labels = tuple(labels)
        x0 = x01
        n = x0.shape[0]
        best_x, best_d = x0, jnp.full((n,), jnp.inf)
        c_img, lo, hi = jnp.full((n,), c), jnp.zeros((n,)), jnp.full((n,), jnp.inf)
        for _ in range(search_steps):
            w = jnp.zeros_like(x0)

            def step(_, carry):
                w, state, best_x, best_d, found = carry
                g, (x, dist, lead) = grad(w, x0, labels, c_img)
                best_x, best_d, found = keep_best(x, dist, lead, best_x, best_d, found)
                updates, state = opt.update(g, state, w)
                return optax.apply_updates(w, updates), state, best_x, best_d, found

            w, state, best_x, best_d, found = jax.lax.fori_loop(0, steps, step, (w, opt.init(w), best_x, best_d, jnp.zeros((n,), bool)))
            # The last iterate is checked too (the loop checks before each update).
            _, (x, dist, lead) = grad(w, x0, labels, c_img)
            best_x, best_d, found = keep_best(x, dist, lead, best_x, best_d, found)
            hi = jnp.where(found, jnp.minimum(hi, c_img), hi)
            lo = jnp.where(found, lo, jnp.maximum(lo, c_img))
            c_img = jnp.where(jnp.isinf(hi), c_img * 10.0, (lo + hi) / 2.0)
        # Images never protected get the last iterate (the refinement on the lattice may finish them).
        return jnp.where(jnp.isinf(best_d)[:, None, None, None], x, best_x)

    return attack
