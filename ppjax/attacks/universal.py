"""A universal look: one set of edit sliders fitted over many photos (the universal perturbations of
Moosavi-Dezfooli et al., CVPR 2017, with an edit in place of noise), so that a new photo is
protected by applying it, in milliseconds, with no optimisation of its own.

The fit is Adam on the sliders (over their half ranges) against the expectation, over minibatches
of photos and input diversity, of the targets' objective away from each photo's own class; after
every step the look is scaled back towards no edit where its mean CIEDE2000 over the batch exceeds
``max_delta_e``. Photos are fitted as square working copies of ``side`` pixels (the classifiers'
own input size by default): the sliders do not depend on the size.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppjax.attacks.loop import _through
from ppjax.attacks.objectives import Target
from ppjax.attacks.transfer import Transfer
from ppjax.ops.metrics import ciede2000

__all__ = ["fit_look"]


def fit_look(
    pipe,
    targets: Sequence[Target],
    photos01: np.ndarray,
    *,
    key: jax.Array,
    steps: int = 200,
    batch: int = 8,
    learning_rate: float = 0.05,
    max_delta_e: float | None = 6.0,
    diversity: float = 0.7,
    start: dict | None = None,
    log: Callable[[int, float, float], None] | None = None,
) -> dict:
    """The look (unbatched sliders of ``pipe``) fitted on ``photos01`` ((N, S, S, 3) float in
    [0, 1]) against ``targets``; ``log(step, objective, share fooled in the batch)`` every 10 steps."""
    targets = tuple(targets)
    photos01 = jnp.asarray(photos01, jnp.float32)
    labels = tuple(jnp.argmax(t.apply(t.variables, photos01), axis=-1) for t in targets)
    div = None
    if diversity:
        from ppjax.attacks.transfer import diverse_inputs

        def div(x, keys, step, valid):
            return diverse_inputs(x, keys, step, diversity, Transfer().diversity_scale, valid)

    through = _through(None, targets, div)
    optimiser = optax.adam(learning_rate)
    u = pipe.normalised(pipe.identity() if start is None else jax.tree_util.tree_map(jnp.asarray, start))

    def shrink(u, x):
        if max_delta_e is None:
            return u
        de = jnp.mean(ciede2000(x, pipe.apply(pipe.from_normalised(u), x)))
        return jax.tree_util.tree_map(lambda a: a * jnp.minimum(1.0, max_delta_e / jnp.maximum(de, 1e-6)), u)

    @jax.jit
    def step(u, state, x, ys, keys, i):
        def loss(u):
            edited = pipe.apply(pipe.from_normalised(u), x)
            value, lead = through(edited, x, ys, keys, i, None)
            return -value / x.shape[0], lead

        (value, lead), g = jax.value_and_grad(loss, has_aux=True)(u)
        updates, state = optimiser.update(g, state, u)
        u = shrink(jax.tree_util.tree_map(lambda a, d: jnp.clip(a + d, -1.0, 1.0), u, updates), x)
        return u, state, -value, jnp.mean(lead > 0)

    state = optimiser.init(u)
    n = photos01.shape[0]
    order = np.asarray(jax.random.permutation(key, n))
    for i in range(steps):
        idx = np.take(order, np.arange(i * batch, (i + 1) * batch), mode="wrap")
        keys = jax.random.split(jax.random.fold_in(key, i), batch)
        u, state, value, fooled = step(u, state, photos01[idx], tuple(y[idx] for y in labels), keys, jnp.int32(i))
        if log is not None and (i % 10 == 9 or i == steps - 1):
            log(i + 1, float(value), float(fooled))
    return jax.tree_util.tree_map(np.asarray, pipe.project(pipe.from_normalised(u)))
