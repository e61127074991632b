"""The attack methods as data: each row of :data:`METHODS` names its parts (step rule, budget,
step size, random start, how terms combine) and its own options; :func:`build` assembles one.

Every method accepts the common options ``eps`` (budget, 1/255 units), ``steps``, ``early_stop``
and ``stop_margin`` (logits), plus its own; an option no method row lists raises ``TypeError``
naming the options that method accepts, so a misspelt option is never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import optax

from ppjax.attacks.cw import build_cw
from ppjax.attacks.loop import iterate
from ppjax.attacks.objectives import Target, Term
from ppjax.attacks.perceptual_budget import PerceptualBudget, perceptual_ball, perceptual_step
from ppjax.attacks.pfgsm import build_pfgsm
from ppjax.attacks.projections import l2_ball, linf_ball, with_psnr_floor
from ppjax.attacks.steps import l2_step, masked_sign_step, momentum_sign_step, normalise_l1, sign_step
from ppjax.attacks.transfer import Transfer

__all__ = ["Method", "METHODS", "EDIT_METHODS", "PERCEPTUAL_METHODS", "NEEDS_APPEAL", "COMMON_OPTIONS", "build", "options_of"]

COMMON_OPTIONS = ("eps", "steps", "early_stop", "stop_margin")


def _masked_rule(options) -> optax.GradientTransformation:
    from ppjax.ops.concealment import concealment_map

    sigma = options["sigma"]
    return masked_sign_step(lambda x0: concealment_map(x0, sigma))


def _pgd_rule(options) -> optax.GradientTransformation:
    return {"linf": sign_step, "l2": l2_step}[options["norm"]]()


@dataclass(frozen=True)
class Method:
    """One attack method, as parts for :func:`ppjax.attacks.iterate`, or a ``custom`` builder for the
    methods with loops of their own (``custom(targets, terms, eps=, steps=, early_stop=,
    stop_margin=, **options)``).

    ``rule(options)`` makes the step rule; ``step_size(eps, steps, options)`` the step in 1/255;
    ``ball`` is ``"linf"`` or the name of an option choosing ``linf``/``l2``; ``steps`` the default
    number of steps (``fixed_steps`` overrides any given); ``options`` the method's own options
    with their defaults.
    """

    summary: str
    steps: int
    rule: Callable[[Mapping[str, Any]], optax.GradientTransformation] = lambda options: sign_step()
    step_size: Callable[[float, int, Mapping[str, Any]], float] = lambda eps, steps, options: eps / steps
    ball: str = "linf"
    random_start: bool = False
    combine: str = "sum"
    early_stop: bool | None = None  # None: as the caller says; False: never (one-shot methods)
    fixed_steps: int | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    needs_appeal: bool = False
    custom: Callable[..., Callable] | None = None
    #: Edit methods: the :mod:`ppjax.edits` parts whose sliders are optimised instead of pixels.
    edit: tuple[str, ...] | None = None
    #: Edit methods: pixel steps added on top of the edit (sign steps within ``eps`` of the edited image).
    hybrid: bool = False


def _madry_step(eps: float, steps: int, options) -> float:
    return options["step_size"] if options.get("step_size") is not None else 2.5 * eps / steps


#: The edit methods' own options: Adam's learning rate (in units of each slider's half range), the
#: weight of a pull towards no edit, and the largest mean CIEDE2000 of an edit (see
#: :func:`ppjax.attacks.edit.edit_attack`).
_EDIT_OPTIONS = MappingProxyType({"learning_rate": 0.1, "reg": 0.0, "max_delta_e": 6.0})

METHODS: Mapping[str, Method] = MappingProxyType({
    "fgsm": Method("FGSM (Goodfellow et al. 2015): one sign step of eps/255", steps=1, fixed_steps=1,
                   step_size=lambda eps, steps, o: eps, early_stop=False),
    "bim": Method("I-FGSM / BIM (Kurakin et al. 2017): sign steps of eps/steps from the image itself", steps=10),
    "pgd": Method("PGD (Madry et al. 2018): random start in the ball, sign (L-inf) or unit-L2 steps of "
                  "2.5 * eps / steps unless step_size is given", steps=20, rule=_pgd_rule, step_size=_madry_step,
                  ball="norm", random_start=True, options=MappingProxyType({"norm": "linf", "step_size": None})),
    "mifgsm": Method("MI-FGSM (Dong et al. 2018): momentum over L1-normalised gradients, steps of eps/steps",
                     steps=10, rule=lambda o: momentum_sign_step(o["decay"]), options=MappingProxyType({"decay": 1.0})),
    "masked": Method("Concealed FGSM, method 1 (Linardos et al., MediaEval 2019), iterated: sign steps of "
                     "2.5 * eps / steps scaled by the concealment map (sigma: its blur, pixels)", steps=20,
                     rule=_masked_rule, step_size=lambda eps, steps, o: 2.5 * eps / steps,
                     options=MappingProxyType({"sigma": 10.0})),
    "coupled": Method("Concealed FGSM, method 2: the classifier's and NIMA's gradients at unit length, added "
                      "with the appeal weight; sign steps of 2.5 * eps / steps", steps=20,
                      step_size=lambda eps, steps, o: 2.5 * eps / steps, combine="unit", needs_appeal=True),
    "pfgsm": Method("P-FGSM (Li et al. 2019): sign steps of eps/steps towards a random class outside the top "
                    "exclude_top until its probability passes threshold", steps=20, custom=build_pfgsm,
                    options=MappingProxyType({"threshold": 0.99, "exclude_top": 5})),
    "cw": Method("C&W-L2 (Carlini & Wagner 2017) with Adam, every pixel within eps/255: the smallest change "
                 "protected with margin", steps=100, custom=build_cw,
                 options=MappingProxyType({"c": 1.0, "search_steps": 1, "learning_rate": 0.1})),
    "edit": Method("Adversarial edit: tone, local (dodge and burn), curves and colour grade sliders optimised with "
                   "Adam (within a photo app's ranges), no pixel noise", steps=40, edit=("tone", "local", "curves", "grade"),
                   options=_EDIT_OPTIONS),
    "curves": Method("Adversarial curves (ACE / AdvCF, Zhao et al. 2020): per-channel and luma tone curves", steps=40,
                     edit=("curves",), options=_EDIT_OPTIONS),
    "tone": Method("Adversarial tone: exposure, contrast, highlights, shadows, clarity (EdgeFool's detail idea)", steps=40,
                   edit=("tone",), options=_EDIT_OPTIONS),
    "grade": Method("Adversarial colour grade: white balance, saturation, vibrance, per-hue a/b shifts with skin, sky and "
                    "vegetation kept in their hue (ColorFool's idea)", steps=40, edit=("grade",), options=_EDIT_OPTIONS),
    "edit+pgd": Method("The adversarial edit, then sign steps of pixel noise within eps of the edited photo where the edit "
                       "alone does not protect", steps=40, edit=("tone", "local", "curves", "grade"), hybrid=True,
                       options=MappingProxyType({**_EDIT_OPTIONS, "pixel_steps": 10})),
})  # fmt: skip

#: Methods that optimise an edit's sliders (:mod:`ppjax.attacks.edit`) rather than pixels.
EDIT_METHODS = frozenset(name for name, m in METHODS.items() if m.edit)

#: Methods whose sign steps have a counterpart under the perceptual budget.
PERCEPTUAL_METHODS = ("pgd", "bim", "fgsm", "mifgsm")

#: Methods that cannot run without an appeal term (a NIMA model).
NEEDS_APPEAL = frozenset(name for name, m in METHODS.items() if m.needs_appeal)


def options_of(method: str) -> tuple[str, ...]:
    """Every option ``method`` accepts: the common ones, then its own."""
    return (*COMMON_OPTIONS, *_method(method).options)


def _method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown attack method {name!r}; known: {', '.join(METHODS)}") from None


def build(
    method: str,
    targets: Sequence[Target],
    *,
    terms: Sequence[Term] = (),
    eps: float = 4.0,
    steps: int | None = None,
    early_stop: bool = True,
    stop_margin: float = 0.0,
    channel: Callable | None = None,
    transfer: Transfer | None = None,
    min_psnr: float | None = None,
    perceptual: PerceptualBudget | None = None,
    perceptual_context=None,
    **options,
) -> Callable:
    """The attack ``method`` against ``targets``: ``attack(key, x01, labels) -> x01_adv`` (see
    :mod:`ppjax.attacks.loop`). ``steps`` None takes the method's default. ``channel`` (see
    :func:`ppjax.attacks.iterate`) puts the classifiers behind the channel's draws, and
    ``transfer`` adds the parts of :mod:`ppjax.attacks.transfer`; the methods with loops of their
    own (cw, pfgsm) take neither. The edit methods (:data:`EDIT_METHODS`) return the edit's
    attack, ``attack(keys, x01, labels, params=None, geometry=None, steps=None, seen=None) ->
    params`` (:func:`ppjax.attacks.edit.edit_attack`; a hybrid's pixel steps are the caller's). ``min_psnr`` (dB) keeps every step of the methods built on the
    common loop at that PSNR or above (:func:`ppjax.attacks.with_psnr_floor`); the methods with
    loops of their own ignore it, and the caller's rounding to the lattice must enforce it (as
    :class:`ppjax.protect.Protector` does for every method). ``perceptual`` (a
    :class:`ppjax.attacks.PerceptualBudget`) bounds each pixel's CIEDE2000 inside the L-infinity
    ball of ``eps`` and steps along each pixel's cheapest direction instead of the gradient's sign
    (:data:`PERCEPTUAL_METHODS` only); ``perceptual_context``: the originals'
    :func:`ppjax.attacks.budget_context`, when the caller has computed it (the attack must then be
    given those originals)."""
    m = _method(method)
    unknown = sorted(set(options) - set(m.options))
    if unknown:
        raise TypeError(f"attack method {method!r} has no option {', '.join(map(repr, unknown))}; it accepts: {', '.join(options_of(method))}")
    opts = {**m.options, **options}
    steps = m.fixed_steps or (m.steps if steps is None else steps)
    if perceptual is not None and method not in PERCEPTUAL_METHODS:
        raise ValueError(f"the perceptual budget works with the sign-step methods ({', '.join(PERCEPTUAL_METHODS)}), not {method}")
    if m.needs_appeal and not any(t.weight for t in terms):
        raise ValueError(f"the {method} method needs an appeal term (NIMA) with a non-zero weight")
    if m.edit:
        from ppjax.attacks.edit import edit_attack
        from ppjax.edits import EditPipeline

        own = {k: opts[k] for k in ("learning_rate", "reg", "max_delta_e")}
        return edit_attack(EditPipeline(m.edit), targets, steps=steps, early_stop=early_stop, stop_margin=stop_margin, terms=terms,
                           channel=channel, transfer=transfer if transfer is not None and transfer.active else None, **own)  # fmt: skip
    if m.custom is not None:
        if transfer is not None and transfer.active:
            raise ValueError(f"the {method} method cannot take input diversity, smoothing or momentum (it has a loop of its own)")
        if channel is not None:
            with_channel = ", ".join(name for name, row in METHODS.items() if row.custom is None)
            raise ValueError(f"the {method} method cannot attack through a channel; these can: {with_channel}")
        return m.custom(tuple(targets), tuple(terms), eps=eps, steps=steps, early_stop=early_stop, stop_margin=stop_margin, **opts)
    ball = opts[m.ball] if m.ball in opts else m.ball
    if ball not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {ball!r}")
    rule, budget = m.rule(opts), linf_ball(eps) if ball == "linf" else l2_ball(eps)
    if perceptual is not None:
        if ball != "linf":
            raise ValueError("the perceptual budget works inside an L-infinity ball (norm 'linf'), not 'l2'")
        rule, budget = perceptual_step(perceptual, eps, perceptual_context), perceptual_ball(perceptual, eps, perceptual_context)
        if method == "mifgsm":
            rule = optax.chain(normalise_l1(), optax.trace(decay=opts["decay"], nesterov=False), rule)
    return iterate(
        targets, rule, with_psnr_floor(budget, min_psnr),
        steps=steps, step_size=m.step_size(eps, steps, opts), random_start=m.random_start,
        early_stop=early_stop if m.early_stop is None else m.early_stop, stop_margin=stop_margin,
        terms=terms, combine=m.combine, channel=channel, transfer=transfer if transfer is not None and transfer.active else None,
    )  # fmt: skip
