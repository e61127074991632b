"""Attacks as pure, jitted functions assembled from small parts, the way optax assembles optimisers.

An attack is ``attack(key, x01, labels) -> x01_adv`` over a batch: ``x01`` is (N, H, W, 3) float32
pixels in [0, 1]; ``labels`` is one (N,) int array per target model (the class to move away from);
the result stays inside the budget around ``x01`` and inside [0, 1]. Every attack takes a PRNG key,
even deterministic ones: same key, same result.

Parts:

* a :class:`Target`: a model's ``apply``, its variables and an :class:`Objective`, the quantity to
  *maximise* per image together with the test that says an image is protected. Several targets
  (an ensemble) add their objectives; an image counts as protected only when all are fooled;
* optional :class:`Term` s on the image itself, added to any objective with a weight: appeal
  (NIMA's mean score) and perceptual penalties (SSIM, CIEDE2000);
* a :class:`StepRule`: turns the gradient into an update direction (sign, momentum sign, L2,
  masked sign);
* a :class:`Projection`: back into the budget (L-infinity or L2 ball) and the [0, 1] box;
* :func:`iterate`: the one loop, a ``lax.while_loop`` with per-image early stop. C&W-L2 has its
  own loop because it minimises distortion with optax's Adam instead of stepping to a boundary.

Budgets (``eps``) and step sizes are in 1/255 pixel units: ``eps=4`` allows a change of 4/255.
``key`` is one PRNG key for the batch, or an (N,) array of keys, one per image: with per-image
keys an image's random draws do not depend on which batch it is in.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "Objective", "Target", "Term", "StepRule", "Projection",
    "cross_entropy", "margin", "away_from_group", "toward_class",
    "appeal", "perceptual",
    "sign_step", "momentum_sign_step", "l2_step", "masked_sign_step",
    "linf_ball", "l2_ball", "per_image_keys",
    "variables_of", "bind", "objective_and_lead", "iterate",
    "make_fgsm", "make_bim", "make_pgd", "make_mifgsm", "make_cw", "make_pfgsm", "make_masked", "make_coupled",
    "METHODS", "NEEDS_APPEAL",
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
    #: Classes that count as not protected besides the label (``away_from_group``'s group):
    #: P-FGSM never picks its target among them.
    group: tuple[int, ...] = ()


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


class Term(NamedTuple):
    """A quantity of the image itself to maximise alongside the objective, with its weight:
    ``value(variables, x, x0) -> (N,)`` for the current image ``x`` and the original ``x0``;
    ``variables`` are the term's own weights (NIMA's for appeal, ``()`` for the others)."""

    value: Callable[[Any, jnp.ndarray, jnp.ndarray], jnp.ndarray]
    weight: float
    variables: Any = ()


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


def appeal(nima_apply: Callable, nima_variables: Any, weight: float) -> Term:
    """NIMA's mean score (1 to 10) of the image, weighted by ``weight`` (the loss term -weight * NIMA mean).

    ``nima_apply(variables, x01) -> (N, 10)`` score probabilities, e.g. ``NimaModel.apply``.
    """

    def value(variables, x, x0):
        p = nima_apply(variables, x).astype(jnp.float32)
        return jnp.sum(p * jnp.arange(1, p.shape[-1] + 1, dtype=jnp.float32), axis=-1)

    return Term(value, weight, nima_variables)


def perceptual(kind: str, weight: float) -> Term:
    """A penalty on visible change: ``ssim`` (weight * (SSIM - 1)) or ``ciede2000`` (-weight * mean
    CIEDE2000 colour difference, in its own units where about 2.3 is just noticeable)."""
    from ppjax import metrics

    if kind == "ssim":
        return Term(lambda _, x, x0: metrics.ssim(x, x0) - 1.0, weight)
    if kind == "ciede2000":
        return Term(lambda _, x, x0: -metrics.ciede2000(x, x0), weight)
    raise ValueError(f"perceptual penalty must be 'ssim' or 'ciede2000', got {kind!r}")


def per_image_keys(key: jax.Array, n: int) -> jax.Array:
    """(n,) keys: ``key`` itself when it already holds one key per image, else split from it."""
    if key.ndim == 1:
        if key.shape[0] != n:
            raise ValueError(f"got {key.shape[0]} keys for {n} images")
        return key
    return jax.random.split(key, n)


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


def masked_sign_step(mask_fn: Callable[[jnp.ndarray], jnp.ndarray]) -> StepRule:
    """Sign steps scaled per pixel by ``mask_fn(x0)`` ((N, H, W, 1) in [0, 1]), computed once from
    the original image: zero where a change would show (see :mod:`ppjax.concealment`)."""
    return StepRule(mask_fn, lambda g, mask: (mask * jnp.sign(g), mask))


class Projection(NamedTuple):
    """``project(x, x0) -> x`` inside the budget around ``x0`` and the [0, 1] box; ``sample`` draws a random start."""

    project: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    sample: Callable[[jax.Array, jnp.ndarray], jnp.ndarray]


def linf_ball(eps: float) -> Projection:
    """L-infinity ball of radius ``eps``/255."""
    r = eps / 255.0

    def project(x, x0):
        return jnp.clip(jnp.clip(x, x0 - r, x0 + r), 0.0, 1.0)

    def sample(key, x0):
        keys = per_image_keys(key, x0.shape[0])
        noise = jax.vmap(lambda k: jax.random.uniform(k, x0.shape[1:], minval=-r, maxval=r))(keys)
        return project(x0 + noise, x0)

    return Projection(project, sample)


def l2_ball(eps: float) -> Projection:
    """L2 ball of radius ``eps``/255 per image (over all pixels and channels)."""
    r = eps / 255.0

    def project(x, x0):
        d = x - x0
        norm = jnp.sqrt(jnp.sum(d * d, axis=_PER_IMAGE, keepdims=True))
        return jnp.clip(x0 + d * jnp.minimum(1.0, r / (norm + 1e-12)), 0.0, 1.0)

    def sample(key, x0):
        keys = per_image_keys(key, x0.shape[0])
        d = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:]))(keys)
        d = d / jnp.sqrt(jnp.sum(d * d, axis=_PER_IMAGE, keepdims=True))
        u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1), (1, 1, 1)))(keys)
        return project(x0 + d * r * u ** (1.0 / x0[0].size), x0)

    return Projection(project, sample)


def objective_and_lead(targets: Sequence[Target], x, labels, terms: Sequence[Term] = (), x0=None):
    """(summed objective plus weighted terms, (N,) smallest lead over the targets).

    An image is protected when its lead is > 0. ``x0`` (the original) is needed with ``terms``.
    """
    total, lead = 0.0, None
    for target, y in zip(targets, labels):
        logits = target.apply(target.variables, x)
        total = total + target.objective.value(logits, y)
        this = target.objective.lead(logits, y)
        lead = this if lead is None else jnp.minimum(lead, this)
    return jnp.sum(total + _weighted_terms(terms, x, x0)), lead


def _weighted_terms(terms: Sequence[Term], x, x0):
    """(N,) sum of weight * value over ``terms`` (0.0 without terms)."""
    return sum((t.weight * t.value(t.variables, x, x0) for t in terms), 0.0)


def _unit(g):
    return g / (jnp.sqrt(jnp.sum(g * g, axis=_PER_IMAGE, keepdims=True)) + 1e-12)


def _gradient(targets, terms, combine):
    """``grad(x, x0, labels) -> (direction to ascend, lead)``.

    ``combine="sum"``: the gradient of objective + sum of weighted terms. ``"unit"``: the objective's
    gradient and each term's scaled to unit L2 norm per image, then added with the terms' weights
    (the second Concealed-FGSM method), so that neither swamps the other whatever their scales.
    """
    if combine == "sum" or not terms:
        grad = jax.grad(lambda x, x0, labels: objective_and_lead(targets, x, labels, terms, x0), has_aux=True)
        return grad
    if combine != "unit":
        raise ValueError(f"combine must be 'sum' or 'unit', got {combine!r}")
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
    step_rule: StepRule,
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
    """The one attack loop. ``step_size`` is in 1/255 units (per step, along the rule's direction).

    With ``early_stop`` an image stops changing once its lead over every target exceeds
    ``stop_margin`` (logits); the loop ends when all images have stopped or after ``steps``.
    ``terms`` are added to the objective as :func:`_gradient` describes for ``combine``.
    The returned ``attack(key, x01, labels, start=None)`` starts from ``start`` when given (e.g. an
    earlier result) instead of ``x01`` or a random point; the budget is always around ``x01``.
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
            direction, state = step_rule.update(g, state)
            moved = projection.project(x + alpha * direction, x0)
            x = jnp.where(done[:, None, None, None], x, moved)
            return i + 1, x, state, done

        _, x, _, _ = jax.lax.while_loop(cond, body, (0, x, step_rule.init(x0), done))
        return x

    return attack


def make_fgsm(targets: Sequence[Target], eps: float = 4.0, terms: Sequence[Term] = (), **_ignored) -> Callable:
    """FGSM (Goodfellow et al. 2015): one sign step of ``eps``/255."""
    return iterate(targets, sign_step(), linf_ball(eps), steps=1, step_size=eps, early_stop=False, terms=terms)


def make_bim(
    targets: Sequence[Target], eps: float = 4.0, steps: int = 10, early_stop: bool = True, stop_margin: float = 0.0, terms: Sequence[Term] = (), **_ignored
) -> Callable:
    """I-FGSM / BIM (Kurakin et al. 2017): ``steps`` sign steps of ``eps/steps`` from the image itself."""
    return iterate(
        targets, sign_step(), linf_ball(eps), steps=steps, step_size=eps / steps, early_stop=early_stop, stop_margin=stop_margin, terms=terms
    )


def make_pgd(
    targets: Sequence[Target],
    eps: float = 4.0,
    steps: int = 20,
    norm: str = "linf",
    early_stop: bool = True,
    stop_margin: float = 0.0,
    step_size: float | None = None,
    terms: Sequence[Term] = (),
    **_ignored,
) -> Callable:
    """PGD (Madry et al. 2018) with a random start in the ball; L-infinity (sign steps) or L2.

    Default step 2.5 * eps / steps, as in Madry et al., so the whole ball is reachable.
    """
    size = step_size if step_size is not None else 2.5 * eps / steps
    common = {"steps": steps, "step_size": size, "random_start": True, "early_stop": early_stop, "stop_margin": stop_margin, "terms": terms}
    if norm == "linf":
        return iterate(targets, sign_step(), linf_ball(eps), **common)
    if norm == "l2":
        return iterate(targets, l2_step(), l2_ball(eps), **common)
    raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")


def make_mifgsm(
    targets: Sequence[Target],
    eps: float = 4.0,
    steps: int = 10,
    decay: float = 1.0,
    early_stop: bool = True,
    stop_margin: float = 0.0,
    terms: Sequence[Term] = (),
    **_ignored,
) -> Callable:
    """MI-FGSM (Dong et al. 2018): momentum over L1-normalised gradients, steps of ``eps/steps``."""
    return iterate(
        targets, momentum_sign_step(decay), linf_ball(eps), steps=steps, step_size=eps / steps, early_stop=early_stop, stop_margin=stop_margin, terms=terms
    )


def make_masked(
    targets: Sequence[Target],
    eps: float = 4.0,
    steps: int = 20,
    sigma: float = 10.0,
    early_stop: bool = True,
    stop_margin: float = 0.0,
    terms: Sequence[Term] = (),
    **_ignored,
) -> Callable:
    """Concealed FGSM, method 1 (Linardos et al., MediaEval 2019), iterated: sign steps of
    ``2.5 * eps / steps`` scaled by :func:`ppjax.concealment.concealment_map` of the original, so flat
    and salient areas stay untouched. ``sigma``: the Sobel map's blur, in pixels."""
    from ppjax.concealment import concealment_map

    return iterate(
        targets, masked_sign_step(lambda x0: concealment_map(x0, sigma)), linf_ball(eps),
        steps=steps, step_size=2.5 * eps / steps, early_stop=early_stop, stop_margin=stop_margin, terms=terms,
    )  # fmt: skip


def make_coupled(
    targets: Sequence[Target],
    eps: float = 4.0,
    steps: int = 20,
    early_stop: bool = True,
    stop_margin: float = 0.0,
    terms: Sequence[Term] = (),
    **_ignored,
) -> Callable:
    """Concealed FGSM, method 2 (Linardos et al., MediaEval 2019), iterated: the classifier's gradient
    and NIMA's (an :func:`appeal` term in ``terms``), each of unit length, added with the appeal
    weight (i.e. the gradient of the NIMA loss subtracted); sign steps of ``2.5 * eps / steps``."""
    if not any(t.weight for t in terms):
        raise ValueError("the coupled method needs an appeal term (NIMA) with a non-zero weight")
    return iterate(
        targets, sign_step(), linf_ball(eps),
        steps=steps, step_size=2.5 * eps / steps, early_stop=early_stop, stop_margin=stop_margin, terms=terms, combine="unit",
    )  # fmt: skip


def make_pfgsm(
    targets: Sequence[Target],
    eps: float = 4.0,
    steps: int = 20,
    threshold: float = 0.99,
    exclude_top: int = 5,
    early_stop: bool = True,
    terms: Sequence[Term] = (),
    **_ignored,
) -> Callable:
    """P-FGSM (Li, Sanchez-Matilla and Cavallaro, ICASSP 2019): sign steps of ``eps/steps`` towards a
    target class until its probability passes ``threshold``.

    Each image's target is drawn at random (from its key) among the classes outside the original
    top ``exclude_top`` and outside the objective's sensitive group, if any. The stop rule is the
    threshold: at 0.99 the target leads every other class by more than 4.6 logits.
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


def make_cw(
    targets: Sequence[Target],
    eps: float = 4.0,
    steps: int = 100,
    c: float = 1.0,
    search_steps: int = 1,
    learning_rate: float = 0.1,
    stop_margin: float = 0.0,
    terms: Sequence[Term] = (),
    **_ignored,
) -> Callable:
    """C&W-L2 (Carlini & Wagner 2017) with optax's Adam, capped at ``eps``/255 per pixel.

    Minimises ``||x - x0||^2 + c * max(stop_margin - lead, 0)`` minus the weighted terms, per image,
    over ``w`` with ``x = clip(x0 + eps/255 * tanh(w), 0, 1)`` (the tanh change of variables bounds
    every pixel's change by the budget, as the box does in the paper). Keeps, per image, the
    closest result whose lead exceeds ``stop_margin``. With ``search_steps`` > 1, ``c`` is searched
    per image: x10 while no success, then bisection. Runs all ``steps``: the point is the
    smallest change, not the first success. Pixel distances are in [0, 1] units.
    """
    import optax

    targets, terms = tuple(targets), tuple(terms)
    r = eps / 255.0
    opt = optax.adam(learning_rate)

    def losses(w, x0, labels, c_img):
        x = jnp.clip(x0 + r * jnp.tanh(w), 0.0, 1.0)
        _, lead = objective_and_lead(targets, x, labels)
        dist = jnp.sum((x - x0) ** 2, axis=_PER_IMAGE)
        loss = dist + c_img * jnp.maximum(stop_margin - lead, 0.0) - _weighted_terms(terms, x, x0)
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


METHODS: dict[str, Callable] = {
    "fgsm": make_fgsm,
    "bim": make_bim,
    "pgd": make_pgd,
    "mifgsm": make_mifgsm,
    "cw": make_cw,
    "pfgsm": make_pfgsm,
    "masked": make_masked,
    "coupled": make_coupled,
}

#: Methods that cannot run without an appeal term (a NIMA model).
NEEDS_APPEAL = frozenset({"coupled"})
