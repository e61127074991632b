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

from ppjax.attacks.objectives import Target, Term, objective_and_lead, weighted_terms
from ppjax.attacks.projections import Projection, per_image_keys

__all__ = ["iterate", "lead_through", "seen_period", "COMBINE"]

_PER_IMAGE = (1, 2, 3)
#: How terms join the classifiers' gradient: summed into one objective, or each gradient at unit length.
COMBINE = ("sum", "unit")


def _unit(g):
    return g / (jnp.sqrt(jnp.sum(g * g, axis=_PER_IMAGE, keepdims=True)) + 1e-12)


def _seen(channel, targets, x0, keys, step, geometry):
    """Per group of the channel's draws at ``step``, each target's (k * N,) top-1 class of the
    original ``x0`` through the same draws."""
    return tuple(
        tuple(jax.lax.stop_gradient(jnp.argmax(t.apply(t.variables, group.pixels), axis=-1)) for t in group.targets)
        for group in channel(keys, step, x0, geometry, targets)
    )


def seen_period(channel, targets, x0, keys, geometry):
    """:func:`_seen` for the first ``channel.period`` steps, stacked (a ``lax.map``: the channel is
    traced once): the draws' structures repeat after that many steps, so step ``i`` takes row
    ``i % period`` (the class of the original through each structure at the JPEG quality of its
    first draw) instead of classifying the original again at every step."""
    return jax.lax.map(lambda step: _seen(channel, targets, x0, keys, step, geometry), jnp.arange(channel.period))


def _objective_and_lead(targets, x, labels, scales=1, ghost=None):
    """:func:`objective_and_lead` with the objective averaged over ``scales`` copies of ``x`` with
    pixel values divided by 1, 2, 4, ... (SI; one batch through the classifiers); the lead is that of
    ``x`` itself. ``ghost``: the ghost networks of ``x``'s images (each copy meets its image's)."""
    if scales == 1:
        return objective_and_lead(targets, x, labels, ghost=ghost)
    n = x.shape[0]
    copies = jnp.concatenate([x * 0.5**i for i in range(scales)])
    if ghost is not None:
        ghost = ghost._replace(keys=jnp.concatenate([ghost.keys] * scales))
    value, lead = objective_and_lead(targets, copies, tuple(jnp.tile(y, scales) for y in labels), ghost=ghost)
    return value / scales, lead[:n]


def _through(channel, targets, diversity=None, scales=1, ghost=0.0):
    """``(objective, lead)`` of the targets on the channel's draws of ``x``: the objective averaged
    over the draws, the lead the smallest over them. Each draw is judged against the class each
    classifier gives the *original* through that same draw (same structure, same JPEG quality):
    the class an attacker taking that path would infer. Otherwise an attack away from one view's
    class can walk straight into the class another view gives the original. ``seen`` may bring
    those classes (from :func:`_seen`); by default they are computed. ``scales`` > 1 averages the
    objective over scaled copies of what the classifiers see (:func:`_objective_and_lead`).
    ``ghost`` > 0: the targets that take one are ghost networks with that half width, drawn anew for
    each image, step and draw (:func:`ppjax.attacks.transfer.ghost_draws`)."""
    from ppjax.attacks.transfer import ghost_draws

    if diversity is not None:  # the classifiers see each step's diverse copy (see ppjax.attacks.transfer)
        seen_through = _through(channel, targets, scales=scales, ghost=ghost)

        def diverse(x, x0, labels, keys, step, geometry, seen=None):
            valid = None if geometry is None else geometry.valid
            return seen_through(diversity(x, keys, step, valid), x0, labels, keys, step, geometry, seen)

        return diverse
    if channel is None:

        def exact(x, x0, labels, keys, step, geometry, seen=None):
            return _objective_and_lead(targets, x, labels, scales, ghost_draws(keys, step, 1, 0, ghost))

        return exact

    def through(x, x0, labels, keys, step, geometry, seen=None):
        n = x.shape[0]
        seen = _seen(channel, targets, x0, keys, step, geometry) if seen is None else seen
        total, count, lead = 0.0, 0, None
        for index, (group, classes) in enumerate(zip(channel(keys, step, x, geometry, targets), seen)):  # groups of draws of one shape each
            xs, bound = group.pixels, group.targets
            k = xs.shape[0] // n

            def judged(xs=xs, bound=bound, classes=classes, k=k, index=index):
                value, this = _objective_and_lead(bound, xs, classes, scales, ghost_draws(keys, step, k, index, ghost))
                return jnp.asarray(value, jnp.float32), jnp.min(this.reshape(k, n), axis=0).astype(jnp.float32)

            if group.active is None:
                value, this = judged()
                count = count + k
            else:  # a group drawn on some steps only: skipped, not computed, on the others
                value, this = jax.lax.cond(group.active, judged, lambda: (jnp.float32(0.0), jnp.full((n,), jnp.inf, jnp.float32)))
                count = count + k * jnp.asarray(group.active, jnp.float32)
            total = total + value
            lead = this if lead is None else jnp.minimum(lead, this)
        return total / count, lead

    return through


def lead_through(channel, targets: Sequence[Target]) -> Callable:
    """``lead(x, x0, labels, keys, step, geometry=None, seen=None) -> (N,)``: the smallest lead over
    the targets and the channel's draws of that step (``channel`` None: of ``x`` itself, against
    ``labels``); ``seen``: the original's classes through those draws, when already known."""
    through = _through(channel, tuple(targets))
    return lambda x, x0, labels, keys, step, geometry=None, seen=None: through(x, x0, labels, keys, step, geometry, seen)[1]


def _gradient(targets, terms, combine, channel=None, diversity=None, scales=1, ghost=0.0):
    """``grad(x, x0, labels, keys, step, geometry, seen=None) -> (direction to ascend, lead)``.

    ``combine="sum"``: the gradient of objective + sum of weighted terms. ``"unit"``: the objective's
    gradient and each term's scaled to unit L2 norm per image, then added with the terms' weights
    (the second Concealed-FGSM method), so that neither swamps the other whatever their scales.
    With a ``channel`` the classifiers see its draws of the image (their expectation); the terms
    always see the image itself.
    """
    if combine not in COMBINE:
        raise ValueError(f"combine must be 'sum' or 'unit', got {combine!r}")
    classifiers = _through(channel, targets, diversity, scales, ghost)
    if combine == "sum" or not terms:

        def total(x, x0, labels, keys, step, geometry, seen=None):
            value, lead = classifiers(x, x0, labels, keys, step, geometry, seen)
            return value + jnp.sum(weighted_terms(terms, x, x0)), lead

        return jax.grad(total, has_aux=True)
    cls_grad = jax.grad(classifiers, has_aux=True)
    term_grads = [jax.grad(lambda x, x0, t=t: jnp.sum(t.value(t.variables, x, x0))) for t in terms]

    def grad(x, x0, labels, keys, step, geometry, seen=None):
        g, lead = cls_grad(x, x0, labels, keys, step, geometry, seen)
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
    channel: Callable | None = None,
    transfer=None,
) -> Callable:
    """The attack loop. ``step_size`` is in 1/255 units (per step, along the rule's direction).

    With ``early_stop`` an image stops changing once its lead over every target exceeds
    ``stop_margin`` (logits); the loop ends when all images have stopped or after ``steps``.
    ``terms`` are added to the objective as ``combine`` says (see :data:`COMBINE`). The returned
    ``attack(key, x01, labels, start=None, geometry=None, steps=None, seen=None)`` starts from
    ``start`` when given (e.g. an earlier result) instead of ``x01`` or a random point; the budget is
    always around ``x01``. ``steps`` there overrides the number of steps (it may be traced).

    ``channel``: what happens to the image between share and classify, as
    ``channel(keys, step, x, geometry, targets) -> groups`` (:class:`ppjax.ops.channel.DrawGroup`:
    (k * N, h, w, 3) draws, the targets that classify them, whether they count at this step; a
    :class:`ppjax.ops.channel.ChannelDraws`), for (N, S, S', 3) canvases described by ``geometry``
    (a :class:`ppjax.ops.canvas.Geometry`; the change stays zero outside each photo). The gradient is
    then the expectation over its draws, and the early stop asks for the margin on every draw of
    ``channel.cycle`` steps in a row (all its structures); ``labels`` are then replaced, per draw, by
    the classes of the original through that draw (``seen``: those classes from :func:`seen_period`,
    computed when not given). None: the classifiers see the image exactly.

    ``transfer`` (a :class:`ppjax.attacks.transfer.Transfer`) adds the mirror, spectrum simulation and input diversity before the
    classifiers (and the channel), scale copies at the classifiers' input, ghost networks in place
    of the targets that take them, and TI smoothing and momentum before ``step_rule``; the early
    stop then looks at the diverse copies (and the ghosts), which the caller's verification on the
    image itself must confirm.
    """
    targets, terms = tuple(targets), tuple(terms)
    alpha = step_size / 255.0
    diversity = None
    if transfer is not None and (transfer.diversity or transfer.spectrum or transfer.flip):
        from ppjax.attacks.transfer import diverse_inputs, mirror_inputs, spectrum_inputs

        def diversity(x, keys, step, valid):
            if transfer.flip:
                x = mirror_inputs(x, keys, step, transfer.flip, valid)
            if transfer.spectrum:  # SSA's view first, then the shrink and shift, as in its paper
                x = spectrum_inputs(x, keys, step, transfer.spectrum, transfer.spectrum_noise / 255.0, valid)
            if transfer.diversity:
                x = diverse_inputs(x, keys, step, transfer.diversity, transfer.diversity_scale, valid)
            return x

    if transfer is not None:
        from ppjax.attacks.transfer import with_transfer_steps

        step_rule = with_transfer_steps(step_rule, transfer)
    grad_fn = _gradient(targets, terms, combine, channel, diversity, *((transfer.scales, transfer.ghost) if transfer is not None else (1, 0.0)))
    cycle = getattr(channel, "cycle", 1)
    max_steps = steps

    def attack(key, x01, labels, start=None, geometry=None, steps=None, seen=None):
        labels = tuple(labels)
        x0 = x01
        valid = None if geometry is None else jnp.asarray(geometry.valid)
        keys = per_image_keys(key, x0.shape[0])
        ctx = None if projection.prepare is None else projection.prepare(x0)
        if start is not None:  # continue from an earlier result, still inside the budget around x01
            x = projection.project(start, x0, valid, ctx)
        else:
            x = projection.sample(key, x0, valid, ctx) if random_start else x0
        done = jnp.zeros(x0.shape[0], bool)
        streak = jnp.zeros(x0.shape[0], jnp.int32)
        limit = max_steps if steps is None else steps

        def cond(carry):
            i, _, _, done, _ = carry
            return (i < limit) & ~jnp.all(done)

        # With a channel, the original's classes through each draw, once for a period of steps.
        if channel is not None and seen is None:
            seen = seen_period(channel, targets, x0, keys, geometry)

        def body(carry):
            i, x, state, done, streak = carry
            now = None if channel is None else jax.tree_util.tree_map(lambda a: a[i % channel.period], seen)
            g, lead = grad_fn(x, x0, labels, keys, i, geometry, now)
            direction, state = step_rule.update(g, state, x)
            moved = projection.project(x + alpha * direction, x0, valid, ctx)
            if early_stop:
                # An image moves only on steps where it lacks the margin, and is done once it has
                # had it on `cycle` steps in a row: with a channel, every structure has then seen it.
                ok = lead > stop_margin
                streak = jnp.where(ok, streak + 1, 0)
                done = done | (streak >= cycle)
                x = jnp.where((ok | done)[:, None, None, None], x, moved)
            else:
                x = moved
            return i + 1, x, state, done, streak

        _, x, _, _, _ = jax.lax.while_loop(cond, body, (0, x, step_rule.init(x0), done, streak))
        return x

    return attack
