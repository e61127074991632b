"""P-FGSM (Li, Sanchez-Matilla and Cavallaro, ICASSP 2019): towards a random class, until its
probability passes a threshold."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from ppjax.attacks.loop import iterate
from ppjax.attacks.objectives import Target, Term, toward_class
from ppjax.attacks.projections import linf_ball, per_image_keys
from ppjax.attacks.steps import sign_step

__all__ = ["build_pfgsm"]


def build_pfgsm(
    targets: Sequence[Target],
    terms: Sequence[Term],
    *,
    eps: float,
    steps: int,
    early_stop: bool,
    stop_margin: float,
    threshold: float = 0.99,
    exclude_top: int = 5,
) -> Callable:
    """P-FGSM (Li, Sanchez-Matilla and Cavallaro, ICASSP 2019): sign steps of ``eps/steps`` towards a
    target class until its probability passes ``threshold``.

    Each image's target is drawn at random (from its key) among the classes outside the original
    top ``exclude_top`` and outside the objective's sensitive group, if any. The stop rule is the
    threshold: at 0.99 the target leads every other class by more than 4.6 logits (``stop_margin``
    does not apply).
    """
    targets = tuple(targets)
    aimed = tuple(Target(t.apply, t.variables, toward_class(threshold)) for t in targets)
    loop = iterate(aimed, sign_step(), linf_ball(eps), steps=steps, step_size=eps / steps, early_stop=early_stop, stop_margin=0.0, terms=terms)

    def attack(key, x01, labels):
        keys = per_image_keys(key, x01.shape[0])
        goals = []
        for i, (t, y) in enumerate(zip(targets, labels)):
            logits = t.apply(t.variables, x01)
            allowed = jnp.ones(logits.shape, bool)
            if exclude_top:
                top = jax.lax.top_k(logits, min(exclude_top, logits.shape[-1] - 1))[1]
                allowed = allowed & ~jnp.any(jax.nn.one_hot(top, logits.shape[-1], dtype=bool), axis=1)
            allowed = allowed & ~jax.nn.one_hot(y, logits.shape[-1], dtype=bool)
            if t.objective.group:
                allowed = allowed.at[:, jnp.asarray(t.objective.group)].set(False)
            draw = jax.vmap(lambda k, c=logits.shape[-1], i=i: jax.random.uniform(jax.random.fold_in(k, 1 + i), (c,)))(keys)
            goals.append(jnp.argmax(jnp.where(allowed, draw, -1.0), axis=-1))
        return loop(keys, x01, tuple(goals))

    return attack
