"""The one attack loop: a ``lax.while_loop`` of gradient, step rule and projection, with a per-image
early stop once an image is protected with margin.

An attack is ``attack(key, x01, labels, start=None) -> x01_adv`` over a batch: ``x01`` is (N, H, W,
3) float32 pixels in [0, 1]; ``labels`` is one (N,) int array per target (the class to move away
from); the result stays inside the projection's budget around ``x01`` and inside [0, 1]. ``key`` is
one PRNG key for the batch, or (N,) keys, one per image, so that an image's random draws do not
depend on the batch it is in. Step sizes are in 1/255 pixel units.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from ppjax.attacks.objectives import Target, Term, objective_and_lead
from ppjax.attacks.projections import Projection

__all__ = ["iterate", "COMBINE"]

_PER_IMAGE = (1, 2, 3)
#: How terms join the classifiers' gradient: summed into one objective, or each gradient at unit length.
COMBINE = ("sum", "unit")


def _unit(g):
    return g / (jnp.sqrt(jnp.sum(g * g, axis=_PER_IMAGE, keepdims=True)) + 1e-12)


def _gradient(targets, terms, combine):
    """``grad(x, x0, labels) -> (direction to ascend, lead)``.

    ``combine="sum"``: the gradient of objective + sum of weighted terms. ``"unit"``: the objective's
    gradient and each term's scaled to unit L2 norm per image, then added with the terms' weights
    (the second Concealed-FGSM method), so that neither swamps the other whatever their scales.
    """
    if combine not in COMBINE:
        raise ValueError(f"combine must be 'sum' or 'unit', got {combine!r}")
    if combine == "sum" or not terms:
        return jax.grad(lambda x, x0, labels: objective_and_lead(targets, x, labels, terms, x0), has_aux=True)
    cls_grad = jax.grad(lambda x, labels: objective_and_lead(targets, x, labels), has_aux=True)
    term_grads = [jax.grad(lambda x, x0, t=t: jnp.sum(t.value(t.variables, x, x0))) for t in terms]

    def grad(x, x0, labels):
        g, lead = cls_grad(x, labels)
        g = _unit(g)
        for t, tg in zip(terms, term_grads):
            g = g + t.weight * _unit(tg(x, x0))
        return g, lead

    return grad


def iterate(
    targets: Sequence[Target],
    step_rule: optax.GradientTransformation,
    projection: Projection,
    *,
    steps: int,
    step_size: float,
    random_start: bool = False,
    early_stop: bool = True,
    stop_margin: float = 0.0,
    terms: Sequence[Term] = (),
    combine: str = "sum",
) -> Callable:
    """The attack loop. ``step_size`` is in 1/255 units (per step, along the rule's direction).

    With ``early_stop`` an image stops changing once its lead over every target exceeds
    ``stop_margin`` (logits); the loop ends when all images have stopped or after ``steps``.
    ``terms`` are added to the objective as ``combine`` says (see :data:`COMBINE`). The returned
    ``attack(key, x01, labels, start=None)`` starts from ``start`` when given (e.g. an earlier
    result) instead of ``x01`` or a random point; the budget is always around ``x01``.
    """
    targets, terms = tuple(targets), tuple(terms)
    alpha = step_size / 255.0
    grad_fn = _gradient(targets, terms, combine)

    def attack(key: jax.Array, x01: jnp.ndarray, labels, start: jnp.ndarray | None = None) -> jnp.ndarray:
        labels = tuple(labels)
        x0 = x01
        if start is not None:  # continue from an earlier result, still inside the budget around x01
            x = projection.project(start, x0)
        else:
            x = projection.sample(key, x0) if random_start else x0
        done = jnp.zeros(x0.shape[0], bool)

        def cond(carry):
            i, _, _, done = carry
            return (i < steps) & ~jnp.all(done)

        def body(carry):
            i, x, state, done = carry
            g, lead = grad_fn(x, x0, labels)
            done = done | (lead > stop_margin) if early_stop else done
            direction, state = step_rule.update(g, state, x)
            moved = projection.project(x + alpha * direction, x0)
            x = jnp.where(done[:, None, None, None], x, moved)
            return i + 1, x, state, done

        _, x, _, _ = jax.lax.while_loop(cond, body, (0, x, step_rule.init(x0), done))
        return x

    return attack
