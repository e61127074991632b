"""Attacks as pure, jitted functions assembled from small parts, the way optax assembles optimisers.

* :mod:`.objectives`: what to maximise against each classifier (:class:`Target`, :class:`Objective`)
  and on the image itself (:class:`Term`: appeal, perceptual penalties);
* :mod:`.steps`: step rules as optax ``GradientTransformation`` s (sign, momentum sign, L2, masked);
* :mod:`.projections`: back into the budget (L-infinity or L2 ball, with an optional PSNR floor)
  and the [0, 1] box;
* :mod:`.perceptual_budget`: a per-pixel CIEDE2000 allowance as a ball and step rules;
* :mod:`.loop`: :func:`iterate`, the one loop, with per-image early stop;
* :mod:`.edit`: adversarial photo edits (sliders of :mod:`ppjax.edits` optimised instead of pixels);
* :mod:`.methods`: the methods as rows of parts (:data:`METHODS`) and :func:`build`;
  C&W (:mod:`.cw`) and P-FGSM (:mod:`.pfgsm`) have loops of their own.

Pixels are float32 (N, H, W, 3) in [0, 1]; budgets (``eps``) and step sizes are in 1/255 units.
Every attack takes a PRNG key, even deterministic ones: same key, same result.
"""

from ppjax.attacks.loop import COMBINE, iterate, lead_through
from ppjax.attacks.methods import COMMON_OPTIONS, EDIT_METHODS, METHODS, NEEDS_APPEAL, PERCEPTUAL_METHODS, Method, build, options_of
from ppjax.attacks.objectives import (
    FUSIONS,
    Objective,
    Target,
    Term,
    appeal,
    away_from_group,
    bind,
    cross_entropy,
    fuse,
    margin,
    objective_and_lead,
    perceptual,
    toward_class,
    variables_of,
    weighted_terms,
)
from ppjax.attacks.perceptual_budget import PerceptualBudget, budget_context, perceptual_ball, perceptual_lattice_step, perceptual_step
from ppjax.attacks.projections import Projection, l2_ball, linf_ball, per_image_keys, psnr_radius, with_psnr_floor
from ppjax.attacks.steps import l2_step, masked_sign_step, momentum_sign_step, sign_step
from ppjax.attacks.transfer import Transfer, diverse_inputs, mirror_inputs, smooth_gradient, spectrum_inputs

__all__ = [
    "Transfer", "diverse_inputs", "mirror_inputs", "smooth_gradient", "spectrum_inputs",
    "COMBINE", "iterate", "lead_through",
    "COMMON_OPTIONS", "EDIT_METHODS", "METHODS", "NEEDS_APPEAL", "PERCEPTUAL_METHODS", "Method", "build", "options_of",
    "FUSIONS", "Objective", "Target", "Term", "appeal", "fuse", "away_from_group", "bind", "cross_entropy", "margin",
    "objective_and_lead", "perceptual", "toward_class", "variables_of", "weighted_terms",
    "PerceptualBudget", "budget_context", "perceptual_ball", "perceptual_lattice_step", "perceptual_step",
    "Projection", "l2_ball", "linf_ball", "per_image_keys", "psnr_radius", "with_psnr_floor",
    "l2_step", "masked_sign_step", "momentum_sign_step", "sign_step",
]  # fmt: skip
