"""What an ensemble costs: one attack step (forward + backward to the pixels) against an ensemble,
against the sum of the same step against each member alone.

The ensemble's gradient comes from :func:`ppjax.attacks.objective_and_lead`, exactly as the attack
loop takes it; each member's from the same function with that member alone. If the ensemble did
nothing wasteful (no repeated preprocessing, no extra copies between members), its step costs at
most the sum of the members' steps: ``ratio`` <= 1. Speed does not depend on the weights' values, so
``random_weights`` times the architectures without their checkpoints (and says so).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppjax import attacks
from ppjax.bench.timing import median_seconds

__all__ = ["random_model", "step_time", "run_ensemble_bench"]


def random_model(name: str, seed: int = 0):
    """(apply, variables) of classifier ``name`` with random weights (Flax's initialisers)."""
    from ppjax.models import efficientnet_lite, normalised_apply, places365

    if name in places365.SPECS:
        spec, module = places365.SPECS[name], places365.build(name=name)
    elif name in efficientnet_lite.SPECS:
        spec, module = efficientnet_lite.SPECS[name], efficientnet_lite.build(variant=name)
    else:
        raise ValueError(f"no random-weight build for {name!r}")
    size = spec.native_size
    variables = module.init(jax.random.key(seed), jnp.zeros((1, size, size, 3), jnp.float32))
    return normalised_apply(module, spec), variables


def step_time(targets: Sequence[attacks.Target], x01: np.ndarray, repeats: int) -> tuple[float, float]:
    """(median seconds of one jitted forward + backward to the pixels, compile seconds)."""
    labels = tuple(jnp.zeros(x01.shape[0], jnp.int32) for _ in targets)

    def value(variables, x):
        bound, _ = attacks.bind(targets, (), (variables, ()))
        return attacks.objective_and_lead(bound, x, labels)[0]

    grad = jax.jit(jax.grad(value, argnums=1))
    variables = jax.device_put(tuple(t.variables for t in targets))
    x = jax.device_put(jnp.asarray(x01))
    return median_seconds(grad, variables, x, repeats=repeats)


def run_ensemble_bench(
    models: dict[str, tuple[Callable, object]],
    *,
    batch: int = 4,
    size: int = 256,
    repeats: int = 5,
    fusion: str = "loss",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Seconds per attack step against each of ``models`` (name -> (apply, variables)) and against
    all of them together, on (batch, size, size, 3) random pixels."""
    x01 = np.random.default_rng(seed).random((batch, size, size, 3), dtype=np.float32)
    rows = []
    for name, (apply, variables) in models.items():
        seconds, compile_s = step_time([attacks.Target(apply, variables, attacks.cross_entropy())], x01, repeats)
        rows.append({"model": name, "seconds": seconds, "compile_seconds": compile_s})
        log(f"{name}: {seconds * 1000:.0f} ms per step (compiled in {compile_s:.0f} s)")
    targets = [attacks.Target(apply, variables, attacks.cross_entropy(), fusion) for apply, variables in models.values()]
    seconds, compile_s = step_time(targets, x01, repeats)
    members = sum(r["seconds"] for r in rows)
    log(f"ensemble: {seconds * 1000:.0f} ms per step, members' sum {members * 1000:.0f} ms")
    return {
        "rows": rows, "ensemble_seconds": seconds, "ensemble_compile_seconds": compile_s, "members_seconds": members,
        "ratio": seconds / members, "batch": batch, "size": size, "repeats": repeats, "fusion": fusion,
        "device": str(jax.devices()[0]),
    }  # fmt: skip
