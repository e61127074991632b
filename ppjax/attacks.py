"""Attacks as pure, jitted functions assembled from small parts, the way optax assembles optimisers.

An attack is ``attack(key, x01, labels) -> x01_adv`` over a batch: ``x01`` is (N, H, W, 3) float32
pixels in [0, 1]; ``labels`` is one (N,) int array per target model (the class to move away from);
the result stays inside the budget around ``x01`` and inside [0, 1]. Every attack takes a PRNG key,
even deterministic ones: same key, same result.

Parts:

* a :class:`Target`: a model's ``apply``, its variables and an :class:`Objective`, the quantity to
  *maximise* per image together with the test that says an image is protected. Several targets
  (an ensemble) add their objectives; an image counts as protected only when all are fooled;
* a :class:`StepRule`: turns the gradient into an update direction (sign, momentum sign, L2);
* a :class:`Projection`: back into the budget (L-infinity or L2 ball) and the [0, 1] box;
* :func:`iterate`: the one loop, a ``lax.while_loop`` with per-image early stop.

Budgets (``eps``) and step sizes are in 1/255 pixel units: ``eps=4`` allows a change of 4/255.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "Objective", "Target", "StepRule", "Projection",
    "cross_entropy", "margin", "away_from_group",
    "sign_step", "momentum_sign_step", "l2_step",
    "linf_ball", "l2_ball",
    "objective_and_lead", "iterate", "make_fgsm", "make_bim", "make_pgd", "make_mifgsm", "METHODS",
]  # fmt: skip

_PER_IMAGE = (1, 2, 3)


class Objective(NamedTuple):
    """``value(logits, labels) -> (N,)`` to maximise; ``lead(logits, labels) -> (N,)`` in logits.

    ``lead`` says how far an image is past the decision boundary: positive means protected (the
    label no longer wins), and an attack stops an image once its lead exceeds a margin, so that
    tiny numerical differences between frameworks or rounding to uint8 cannot undo it.
    """

    value: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    lead: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


class Target(NamedTuple):
    """A model to fool: ``apply(variables, x01) -> logits`` and the objective used against it."""

    apply: Callable[[Any, jnp.ndarray], jnp.ndarray]
    variables: Any
    objective: Objective


def cross_entropy() -> Objective:
    """Untargeted: raise the cross-entropy of ``labels``."""

    def value(logits, labels):
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        return -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]

    return Objective(value, _lead_of_others)


def margin(kappa: float = 0.0) -> Objective:
    """Carlini & Wagner's margin: best other logit minus the label's, capped at ``kappa``."""

    def value(logits, labels):
        return jnp.minimum(_lead_of_others(logits, labels), kappa)

    return Objective(value, _lead_of_others)


def away_from_group(group: Sequence[int], num_classes: int) -> Objective:
    """Push probability mass out of a whole group of classes (e.g. the 60 sensitive scenes).

    Maximises log P(class outside the group); the lead is the best logit outside the group minus
    the best inside, so moving a bedroom to a closet (both sensitive) does not count.
    """
    inside = jnp.zeros(num_classes, bool).at[jnp.asarray(list(group))].set(True)

    def value(logits, labels):
        logits = logits.astype(jnp.float32)
        outside = jnp.where(inside, -jnp.inf, logits)
        return jax.nn.logsumexp(outside, axis=-1) - jax.nn.logsumexp(logits, axis=-1)

    def lead(logits, labels):
        return jnp.max(jnp.where(inside, -jnp.inf, logits), -1) - jnp.max(jnp.where(inside, logits, -jnp.inf), -1)

    return Objective(value, lead)


def _lead_of_others(logits, labels):
    own = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jnp.max(others, axis=-1) - own


class StepRule(NamedTuple):
    """``init(x) -> state``; ``update(grad, state) -> (direction, state)``, direction per pixel."""

    init: Callable[[jnp.ndarray], Any]
    update: Callable[[jnp.ndarray, Any], tuple[jnp.ndarray, Any]]


def sign_step() -> StepRule:
    """FGSM's rule: the sign of the gradient (steepest ascent under L-infinity)."""
    return StepRule(lambda x: (), lambda g, s: (jnp.sign(g), s))


def momentum_sign_step(decay: float = 1.0) -> StepRule:
    """MI-FGSM (Dong et al. 2018): accumulate L1-normalised gradients with ``decay``, step by their sign."""

    def update(g, m):
        m = decay * m + g / (jnp.mean(jnp.abs(g), axis=_PER_IMAGE, keepdims=True) + 1e-12)
        return jnp.sign(m), m

    return StepRule(jnp.zeros_like, update)


def l2_step() -> StepRule:
    """The gradient scaled to unit L2 norm per image (steepest ascent under L2)."""

    def update(g, s):
        norm = jnp.sqrt(jnp.sum(g * g, axis=_PER_IMAGE, keepdims=True))
        return g / (norm + 1e-12), s

    return StepRule(lambda x: (), update)


class Projection(NamedTuple):
    """``project(x, x0) -> x`` inside the budget around ``x0`` and the [0, 1] box; ``sample`` draws a random start."""

    project: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    sample: Callable[[jax.Array, jnp.ndarray], jnp.ndarray]


def linf_ball(eps: float) -> Projection:
    """L-infinity ball of radius ``eps``/255."""
    r = eps / 255.0

    def project(x, x0):
        return jnp.clip(jnp.clip(x, x0 - r, x0 + r), 0.0, 1.0)

    return Projection(project, lambda key, x0: project(x0 + jax.random.uniform(key, x0.shape, minval=-r, maxval=r), x0))


def l2_ball(eps: float) -> Projection:
    """L2 ball of radius ``eps``/255 per image (over all pixels and channels)."""
    r = eps / 255.0

    def project(x, x0):
        d = x - x0
        norm = jnp.sqrt(jnp.sum(d * d, axis=_PER_IMAGE, keepdims=True))
        return jnp.clip(x0 + d * jnp.minimum(1.0, r / (norm + 1e-12)), 0.0, 1.0)

    def sample(key, x0):
        d = jax.random.normal(key, x0.shape)
        d = d / jnp.sqrt(jnp.sum(d * d, axis=_PER_IMAGE, keepdims=True))
        u = jax.random.uniform(jax.random.fold_in(key, 1), (x0.shape[0], 1, 1, 1))
        return project(x0 + d * r * u ** (1.0 / x0[0].size), x0)

    return Projection(project, sample)


def objective_and_lead(targets: Sequence[Target], x, labels):
    """(summed objective, (N,) smallest lead over the targets): an image is protected when lead > 0."""
    total, lead = 0.0, None
    for target, y in zip(targets, labels):
        logits = target.apply(target.variables, x)
        total = total + target.objective.value(logits, y)
        this = target.objective.lead(logits, y)
        lead = this if lead is None else jnp.minimum(lead, this)
    return jnp.sum(total), lead


def iterate(
    targets: Sequence[Target],
    step_rule: StepRule,
    projection: Projection,
    *,
    steps: int,
    step_size: float,
    random_start: bool = False,
    early_stop: bool = True,
    stop_margin: float = 0.0,
) -> Callable:
    """The one attack loop. ``step_size`` is in 1/255 units (per step, along the rule's direction).

    With ``early_stop`` an image stops changing once its lead over every target exceeds
    ``stop_margin`` (logits); the loop ends when all images have stopped or after ``steps``.
    """
    targets = tuple(targets)
    alpha = step_size / 255.0
    grad_fn = jax.grad(lambda x, labels: objective_and_lead(targets, x, labels), has_aux=True)

    def attack(key: jax.Array, x01: jnp.ndarray, labels) -> jnp.ndarray:
        labels = tuple(labels)
        x0 = x01
        x = projection.sample(key, x0) if random_start else x0
        done = jnp.zeros(x0.shape[0], bool)

        def cond(carry):
            i, _, _, done = carry
            return (i < steps) & ~jnp.all(done)

        def body(carry):
            i, x, state, done = carry
            g, lead = grad_fn(x, labels)
            done = done | (lead > stop_margin) if early_stop else done
            direction, state = step_rule.update(g, state)
            moved = projection.project(x + alpha * direction, x0)
            x = jnp.where(done[:, None, None, None], x, moved)
            return i + 1, x, state, done

        _, x, _, _ = jax.lax.while_loop(cond, body, (0, x, step_rule.init(x0), done))
        return x

    return attack


def make_fgsm(targets: Sequence[Target], eps: float = 4.0, **_ignored) -> Callable:
    """FGSM (Goodfellow et al. 2015): one sign step of ``eps``/255."""
    return iterate(targets, sign_step(), linf_ball(eps), steps=1, step_size=eps, early_stop=False)


def make_bim(targets: Sequence[Target], eps: float = 4.0, steps: int = 10, early_stop: bool = True, stop_margin: float = 0.0, **_ignored) -> Callable:
    """I-FGSM / BIM (Kurakin et al. 2017): ``steps`` sign steps of ``eps/steps`` from the image itself."""
    return iterate(targets, sign_step(), linf_ball(eps), steps=steps, step_size=eps / steps, early_stop=early_stop, stop_margin=stop_margin)


def make_pgd(
    targets: Sequence[Target],
    eps: float = 4.0,
    steps: int = 20,
    norm: str = "linf",
    early_stop: bool = True,
    stop_margin: float = 0.0,
    step_size: float | None = None,
    **_ignored,
) -> Callable:
    """PGD (Madry et al. 2018) with a random start in the ball; L-infinity (sign steps) or L2.

    Default step 2.5 * eps / steps, as in Madry et al., so the whole ball is reachable.
    """
    size = step_size if step_size is not None else 2.5 * eps / steps
    common = dict(steps=steps, step_size=size, random_start=True, early_stop=early_stop, stop_margin=stop_margin)
    if norm == "linf":
        return iterate(targets, sign_step(), linf_ball(eps), **common)
    if norm == "l2":
        return iterate(targets, l2_step(), l2_ball(eps), **common)
    raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")


def make_mifgsm(
    targets: Sequence[Target], eps: float = 4.0, steps: int = 10, decay: float = 1.0, early_stop: bool = True, stop_margin: float = 0.0, **_ignored
) -> Callable:
    """MI-FGSM (Dong et al. 2018): momentum over L1-normalised gradients, steps of ``eps/steps``."""
    return iterate(
        targets, momentum_sign_step(decay), linf_ball(eps), steps=steps, step_size=eps / steps, early_stop=early_stop, stop_margin=stop_margin
    )


METHODS: dict[str, Callable] = {"fgsm": make_fgsm, "bim": make_bim, "pgd": make_pgd, "mifgsm": make_mifgsm}
