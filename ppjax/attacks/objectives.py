"""What an attack maximises: objectives against classifiers, and terms on the image itself.

A :class:`Target` pairs a classifier's ``apply(variables, x01) -> logits`` with an
:class:`Objective`: the per-image quantity to *maximise* and the ``lead`` that says whether an image
is protected. Several targets (an ensemble) join their objectives as their ``fusion`` says (see
:data:`FUSIONS`); an image counts as protected only when every target is fooled. A :class:`Term` is
a quantity of the image itself (appeal, perceptual penalties) added to any objective with a weight.
Pixels are float32 (N, H, W, 3) in [0, 1].
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ppjax.models.layers import ghostly

__all__ = [
    "Objective", "Target", "Term",
    "cross_entropy", "margin", "away_from_group", "toward_class", "appeal", "perceptual",
    "variables_of", "bind", "objective_and_lead", "weighted_terms", "FUSIONS",
]  # fmt: skip

#: How an ensemble's members join into one objective: ``loss``, the sum of each member's objective
#: on its own logits; ``balanced``, the same sum with each member's gradient at the pixels scaled to
#: a mean magnitude of 1 per image (so that no member's larger gradients steer the sign alone);
#: ``logits``, each member's objective on the members' mean logits; ``probs``, on the log of their
#: mean probabilities. The last two need members with the same classes.
FUSIONS = ("loss", "balanced", "logits", "probs")


class Objective(NamedTuple):
    """``value(logits, labels) -> (N,)`` to maximise; ``lead(logits, labels) -> (N,)`` in logits.

    ``lead`` says how far an image is past the decision boundary: positive means protected (the
    label no longer wins), and an attack stops an image once its lead exceeds a margin, so that
    tiny numerical differences between frameworks or rounding to uint8 cannot undo it.
    """

    value: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    lead: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    #: Classes that count as not protected besides the label (``away_from_group``'s group):
    #: P-FGSM never picks its target among them.
    group: tuple[int, ...] = ()


class Target(NamedTuple):
    """A model to fool: ``apply(variables, x01) -> logits`` and the objective used against it;
    ``fusion`` (one of :data:`FUSIONS`, the same for every member) says how it joins an ensemble;
    ``fixed_size``: the side the model resizes any input to itself (its ``ModelSpec.fixed_size``),
    None when it takes images as they are."""

    apply: Callable[[Any, jnp.ndarray], jnp.ndarray]
    variables: Any
    objective: Objective
    fusion: str = "loss"
    fixed_size: int | None = None
    #: Whether ``apply`` takes a ghost network's skip erosion as its keyword ``ghost``
    #: (:attr:`ppjax.models.Model.has_ghost`); the attack loop passes one with ``Transfer.ghost``,
    #: and every wrapper of ``apply`` (canvases, the JPEG round trip) passes it on.
    ghost: bool = False


class Term(NamedTuple):
    """A quantity of the image itself to maximise alongside the objective, with its weight:
    ``value(variables, x, x0) -> (N,)`` for the current image ``x`` and the original ``x0``;
    ``variables`` are the term's own weights (NIMA's for appeal, ``()`` for the others)."""

    value: Callable[[Any, jnp.ndarray, jnp.ndarray], jnp.ndarray]
    weight: float
    variables: Any = ()


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

    return Objective(value, lead, tuple(int(c) for c in group))


def toward_class(threshold: float = 0.99) -> Objective:
    """Targeted: raise log P(``labels``), here the target classes; the lead is log P(target) -
    log ``threshold``, positive once the target's probability passes the threshold."""

    def value(logits, targets):
        return jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32)), targets[:, None], axis=1)[:, 0]

    return Objective(value, lambda logits, targets: value(logits, targets) - jnp.log(threshold))


def _lead_of_others(logits, labels):
    own = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jnp.max(others, axis=-1) - own


def appeal(nima_apply: Callable, nima_variables: Any, weight: float) -> Term:
    """NIMA's mean score (1 to 10) of the image, weighted by ``weight`` (the loss term -weight * NIMA mean).

    ``nima_apply(variables, x01) -> (N, 10)`` score probabilities, e.g. a loaded NIMA ``Model.apply``.
    """

    def value(variables, x, x0):
        p = nima_apply(variables, x).astype(jnp.float32)
        return jnp.sum(p * jnp.arange(1, p.shape[-1] + 1, dtype=jnp.float32), axis=-1)

    return Term(value, weight, nima_variables)


def perceptual(kind: str, weight: float) -> Term:
    """A penalty on visible change: ``ssim`` (weight * (SSIM - 1)) or ``ciede2000`` (-weight * mean
    CIEDE2000 colour difference, in its own units where about 2.3 is just noticeable)."""
    from ppjax.ops import metrics

    if kind == "ssim":
        return Term(lambda _, x, x0: metrics.ssim(x, x0) - 1.0, weight)
    if kind == "ciede2000":
        return Term(lambda _, x, x0: -metrics.ciede2000(x, x0), weight)
    raise ValueError(f"perceptual penalty must be 'ssim' or 'ciede2000', got {kind!r}")


def variables_of(targets: Sequence[Target], terms: Sequence[Term] = ()):
    """All weights held by ``targets`` and ``terms``, as one pytree for :func:`bind`.

    Pass it to a jitted function as an argument and :func:`bind` it inside: weights a jitted
    closure captures are embedded in the compiled program as constants, which makes each cached
    program as large as the models (about 190 MB for ResNet50, per image size).
    """
    return tuple(t.variables for t in targets), tuple(t.variables for t in terms)


def bind(targets: Sequence[Target], terms: Sequence[Term], variables) -> tuple[tuple[Target, ...], tuple[Term, ...]]:
    """``targets`` and ``terms`` holding ``variables`` (from :func:`variables_of`, possibly traced)."""
    target_vars, term_vars = variables
    return (
        tuple(t._replace(variables=v) for t, v in zip(targets, target_vars, strict=True)),
        tuple(t._replace(variables=v) for t, v in zip(terms, term_vars, strict=True)),
    )


def objective_and_lead(targets: Sequence[Target], x, labels, terms: Sequence[Term] = (), x0=None, ghost=None):
    """(objective joined by the targets' fusion plus weighted terms, (N,) smallest lead over the targets).

    An image is protected when its lead is > 0, and the lead is always each member's own: a fused
    objective changes where the attack goes, never what counts as protected. ``x0`` (the original)
    is needed with ``terms``. ``ghost`` (a :class:`ppjax.models.layers.Ghost` for the N images):
    the members that take one are their ghost networks here, objective and lead both.
    """
    fusion = _fusion_of(targets)
    seen = (lambda x: balance_gradient(x)) if fusion == "balanced" and len(targets) > 1 else (lambda x: x)
    logits = [t.apply(t.variables, seen(x), **ghostly(ghost if t.ghost else None)) for t in targets]
    total, lead = 0.0, None
    for target, y, out in zip(targets, labels, logits):
        this = target.objective.lead(out, y)
        lead = this if lead is None else jnp.minimum(lead, this)
    if fusion in ("logits", "probs") and len(targets) > 1:
        fused = fuse(logits, fusion)
        # Each member's label on the fused logits; averaged, so that the scale is one model's.
        total = sum(t.objective.value(fused, y) for t, y in zip(targets, labels)) / len(targets)
    else:
        total = sum((t.objective.value(out, y) for t, y, out in zip(targets, labels, logits)), 0.0)
    return jnp.sum(total + weighted_terms(terms, x, x0)), lead


@jax.custom_vjp
def balance_gradient(x):
    """``x`` unchanged forward; backward each image's gradient divided by its mean magnitude, so
    that every member of a ``balanced`` ensemble pulls with the same weight."""
    return x


def _balance_fwd(x):
    return x, None


def _balance_bwd(_, g):
    scale = jnp.mean(jnp.abs(g), axis=tuple(range(1, g.ndim)), keepdims=True)
    return (g / (scale + jnp.asarray(1e-12, g.dtype)),)  # a member with no gradient (float32 underflow) stays at none


balance_gradient.defvjp(_balance_fwd, _balance_bwd)


def fuse(logits: Sequence[jnp.ndarray], fusion: str) -> jnp.ndarray:
    """One (N, C) float32 logit array from the members' (``logits``: mean; ``probs``: log mean softmax)."""
    if len({out.shape[-1] for out in logits}) != 1:
        raise ValueError(f"--ensemble {fusion} needs members with the same classes, got {sorted({out.shape[-1] for out in logits})}")
    stacked = jnp.stack([out.astype(jnp.float32) for out in logits])
    if fusion == "logits":
        return jnp.mean(stacked, axis=0)
    if fusion == "probs":
        return jax.nn.logsumexp(jax.nn.log_softmax(stacked, axis=-1), axis=0) - jnp.log(float(len(logits)))
    raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")


def _fusion_of(targets: Sequence[Target]) -> str:
    fusions = {t.fusion for t in targets}
    if len(fusions) != 1 or not fusions <= set(FUSIONS):
        raise ValueError(f"an ensemble's members need one fusion of {', '.join(FUSIONS)}, got {sorted(fusions)}")
    return fusions.pop()


def weighted_terms(terms: Sequence[Term], x, x0):
    """(N,) sum of weight * value over ``terms`` (0.0 without terms)."""
    return sum((t.weight * t.value(t.variables, x, x0) for t in terms), 0.0)
