"""The jitted core of protection: attack, round to the uint8 lattice, verify, refine where needed.

What is written is what was verified. The attack works in float; the result is rounded to the
uint8 lattice (staying inside the budget, and above the PSNR floor when one is set), the
classifiers are run again on exactly those values, and an image that is not protected with margin
on the lattice (rounding un-protected it, or the attack's steps were not enough) gets up to
``lattice_steps`` more sign steps of 1/255 *on the lattice*. For JPEG output,
:meth:`Protector.refine_for_jpeg` steps against the classifiers behind a differentiable JPEG round
trip (:mod:`ppjax.ops.jpeg`).

Pixels are float32 (N, H, W, 3) in [0, 1] in and out; inputs are expected on the uint8 lattice
(decoded files), and outputs are on it (``k / 255``), so :func:`ppjax.io.to_uint8` recovers the
exact bytes that were verified.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppjax import attacks
from ppjax.attacks.projections import psnr_radius
from ppjax.ops.channel import CHANNELS, apply_variant, channel_draws

__all__ = ["lattice_radius", "quantise", "Protector"]


def lattice_radius(eps: float) -> float:
    """The largest whole number of 1/255 steps inside a budget of ``eps``/255."""
    return float(np.floor(eps + 1e-6))


def quantise(x01: jnp.ndarray, x0_01: jnp.ndarray, eps: float, min_psnr: float | None = None) -> jnp.ndarray:
    """``x01`` rounded to the uint8 lattice (``k / 255``) without leaving the L-infinity budget
    ``eps``/255 around the original ``x0_01`` (itself on the lattice) or [0, 1], and, with
    ``min_psnr`` (dB), without the PSNR of the rounded image falling below it."""
    return _quantise255(x01, jnp.rint(x0_01 * 255.0), eps, min_psnr) / 255.0


#: Halvings in each search of :func:`_under_floor`.
_HALVINGS = 20
#: Spread of the fixed per-value offsets that break ties between equal remainders, so that the
#: search can round up a share of a group of equal changes (sign steps make many) instead of all
#: or none of it.
_TIE_SPREAD = 1e-3


def _quantise255(x01, x0_255, eps, min_psnr=None):
    r = lattice_radius(eps)
    d = jnp.clip(x01 * 255.0 - x0_255, -r, r)
    q = jnp.rint(d)
    if min_psnr:
        q = _under_floor(d, q, min_psnr)
    # The original is on the lattice, so rounding x0 + d and adding a rounded d are the same.
    return jnp.clip(x0_255 + q, 0.0, 255.0)


def _under_floor(d, rounded, min_psnr):
    """Per image, the whole-number change ``rounded`` (``rint(d)``, 1/255 units) where it keeps the
    PSNR floor; elsewhere the change nearest ``d`` in energy that keeps it: each value's magnitude
    is ``floor(|d| s)`` or one more, for the largest ``s`` in [0, 1] whose floors keep it, and the
    values with the largest remainders are the ones rounded up while the floor still holds. Every
    magnitude stays at most ``ceil(|d|)``, so the L-infinity budget and [0, 255] hold too."""
    axes = tuple(range(1, d.ndim))
    shape = (d.shape[0],) + (1,) * (d.ndim - 1)
    limit = psnr_radius(min_psnr, int(np.prod(d.shape[1:]))) * 255.0
    limit2 = limit * limit * (1.0 - 1e-6)  # float32 sums of many squares: keep a hair inside

    def fits(q):
        return jnp.sum(q * q, axis=axes).reshape(shape) <= limit2

    def search(fits_at, good, bad):
        # Per image, bisection between a value that fits (good) and one that may not (bad); the
        # energy is monotone in the value, so the result is the fitting value nearest bad.
        def halve(_, bounds):
            good, bad = bounds
            mid = 0.5 * (good + bad)
            ok = fits_at(mid)
            return jnp.where(ok, mid, good), jnp.where(ok, bad, mid)

        return jax.lax.fori_loop(0, _HALVINGS, halve, (good, bad))[0]

    def floored():
        mag = jnp.abs(d)
        ones = jnp.ones(shape, d.dtype)
        s = jnp.where(fits(jnp.floor(mag)), ones, search(lambda s: fits(jnp.floor(mag * s)), 0.0 * ones, ones))
        base = jnp.floor(mag * s)
        flat = jnp.arange(int(np.prod(d.shape[1:])), dtype=jnp.uint32).reshape(d.shape[1:])
        offset = (flat * jnp.uint32(2654435761)).astype(jnp.float32) / np.float32(2**32) * _TIE_SPREAD
        rem = jnp.where(mag * s > base, mag * s - base + offset, -1.0)  # nothing to round up: never
        t = search(lambda t: fits(base + (rem >= t)), 1.5 * ones, 0.5 * ones)
        return jnp.sign(d) * (base + (rem >= t))

    kept = fits(rounded)
    return jax.lax.cond(jnp.all(kept), lambda: rounded, lambda: jnp.where(kept, rounded, floored()))


@dataclass(frozen=True, eq=False)
class Protector:
    """Jitted protection of (N, H, W, 3) float [0, 1] batches against ``targets``; immutable, so its
    compiled programs always match its settings (:func:`dataclasses.replace` makes a new one).

    ``method`` is a name in :data:`ppjax.attacks.METHODS` and ``options`` its own options (an
    unknown one raises here). Each target is attacked away from its own top-1 class on the
    original image. ``terms`` (appeal, perceptual penalties) go to the attack; the lattice
    refinement only looks at the classifiers.
    """

    targets: Sequence[attacks.Target]
    method: str = "pgd"
    eps: float = 4.0
    steps: int = 20
    early_stop: bool = True
    lattice_steps: int = 10
    #: Logit lead at which an image counts as protected with margin and stops changing. A margin
    #: keeps the result protected across frameworks and encoders: at margin 0 images sit on the
    #: decision boundary, where a 1e-5 difference between JAX and ONNX Runtime flips them back.
    margin: float = 2.0
    terms: Sequence[attacks.Term] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Threat model: "exact" (the classifiers see the image as it is, the MediaEval 2019 protocol)
    #: or "social" (they see draws of :func:`ppjax.ops.channel.channel_draws`).
    channel: str = "exact"
    #: Channel draws averaged per step with ``channel="social"``.
    channel_draws: int = 2
    #: Transfer parts for the attack (input diversity, TI smoothing, momentum); None: none.
    transfer: attacks.Transfer | None = None
    #: PSNR floor in dB (None: none): every step, and the bytes returned, keep at least this PSNR
    #: against the original (see :func:`quantise`).
    min_psnr: float | None = None
    _variables: Any = field(init=False, repr=False)
    _programs: dict = field(init=False, repr=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "targets", tuple(self.targets))
        set_(self, "terms", tuple(self.terms))
        set_(self, "options", MappingProxyType(dict(self.options)))
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {self.channel!r}")
        self._attack(self.targets, self.terms, self._draws((1, 256, 256, 3)))  # unknown methods and options raise now, not at the first batch
        # The weights go into the compiled programs as arguments, not as captured constants: the
        # persistent cache then holds a few MB per image size rather than the models' size. On
        # the device once, so that NumPy weights are not copied over again on every call.
        set_(self, "_variables", jax.device_put(attacks.variables_of(self.targets, self.terms)))
        programs = {"run": jax.jit(self._run), "status": jax.jit(self._status), "jpeg": {}}
        programs["leads"] = jax.jit(self._leads)
        programs["labels"] = jax.jit(lambda variables, x01: tuple(jnp.argmax(t.apply(t.variables, x01), axis=-1) for t in self._bound(variables)[0]))
        programs["refine_channel"] = jax.jit(self._refine_channel)
        set_(self, "_programs", programs)

    def _draws(self, shape):
        """The channel's draws for a batch of ``shape`` (None for the exact channel)."""
        if self.channel == "exact":
            return None
        return channel_draws(shape[1], shape[2], draws=self.channel_draws)

    def _attack(self, targets, terms, draws):
        return attacks.build(
            self.method, targets, terms=terms, eps=self.eps, steps=self.steps, early_stop=self.early_stop,
            stop_margin=self.margin, channel=draws, transfer=self.transfer, min_psnr=self.min_psnr, **self.options,
        )  # fmt: skip

    def _bound(self, variables):
        """(targets, terms) holding ``variables``, the traced weights inside a jitted function."""
        return attacks.bind(self.targets, self.terms, variables)

    def _lattice_refinement(self, targets, draws=None, steps=None):
        return attacks.iterate(
            targets, attacks.sign_step(), attacks.with_psnr_floor(attacks.linf_ball(lattice_radius(self.eps)), self.min_psnr),
            steps=self.lattice_steps if steps is None else steps, step_size=1.0, stop_margin=self.margin, channel=draws,
        )  # fmt: skip

    @staticmethod
    def _lead(targets, x01, labels, draws=None, key=None, x0=None):
        """(N,) smallest lead over the targets; with ``draws``, over the channel's draws of one whole
        cycle of steps, each against the original ``x0`` through the same draw."""
        if draws is None:
            return attacks.objective_and_lead(targets, x01, labels)[1]
        keys = attacks.per_image_keys(key, x01.shape[0])
        lead_at = attacks.lead_through(draws, targets)
        # Over a whole cycle of the draws, so that every structure has its say.
        return functools.reduce(jnp.minimum, [lead_at(x01, x0, labels, keys, step) for step in range(draws.cycle)])

    def _status(self, variables, x01, labels):
        return self._lead(self._bound(variables)[0], x01, labels) > 0.0

    def _leads(self, variables, x01, labels):
        return self._lead(self._bound(variables)[0], x01, labels)

    def _labels(self, targets, x01, draws):
        """Each target's top-1 class on the original, seen through the channel's reference view."""
        seen = x01 if draws is None else apply_variant(x01, draws.reference)
        return tuple(jnp.argmax(t.apply(t.variables, seen), axis=-1) for t in targets)

    def _run(self, variables, key, x01):
        targets, terms = self._bound(variables)
        draws = self._draws(x01.shape)
        refine = self._lattice_refinement(targets, draws)
        x0_255 = jnp.rint(x01 * 255.0)
        labels = self._labels(targets, x01, draws)
        q = _quantise255(self._attack(targets, terms, draws)(key, x01, labels), x0_255, self.eps, self.min_psnr)
        q_lead = self._lead(targets, q / 255.0, labels, draws, key, x01)

        def refined(q):
            # Sign steps of 1/255 from the quantised image; images already protected with margin
            # are left as they are (early stop).
            r = _quantise255(refine(key, x01, labels, start=q / 255.0), x0_255, self.eps, self.min_psnr)
            return r, self._lead(targets, r / 255.0, labels, draws, key, x01)

        # The refinement's first step costs a gradient even when every image is already protected
        # with margin on the lattice (the usual case): skip it then.
        q, q_lead = jax.lax.cond(jnp.any(q_lead <= self.margin), refined, lambda q: (q, q_lead), q)
        return q / 255.0, labels, q_lead > 0.0

    @property
    def variables(self):
        """The weights the programs take (targets' and terms'), as placed on the device(s)."""
        return self._variables

    def with_variables(self, variables) -> "Protector":
        """This protector with ``variables`` (the same tree, e.g. placed on another device): it
        shares this one's compiled programs, which run where the weights are."""
        twin = copy.copy(self)
        object.__setattr__(twin, "_variables", variables)
        return twin

    def __call__(self, key: jax.Array, x01) -> tuple[np.ndarray, tuple, np.ndarray]:
        """(protected batch on the uint8 lattice, labels per target, protected-as-computed flags).

        ``key``: one key for the batch, or (N,) keys, one per image.
        """
        q, labels, ok = self._programs["run"](self._variables, key, jnp.asarray(x01, jnp.float32))
        return np.asarray(q), labels, np.asarray(ok)

    def refine_for_jpeg(self, key: jax.Array, x01, start01, labels, quality: int) -> np.ndarray:
        """More lattice steps from ``start01`` (what was encoded last), within the budget around the
        originals ``x01``, against the classifiers *behind* a JPEG round trip at ``quality``
        (:func:`ppjax.ops.jpeg.jpeg_round_trip`): the batch to encode, on the lattice. The verdict is
        left to :meth:`verify` on the decoded file, not to the differentiable stand-in."""
        programs = self._programs["jpeg"]
        if quality not in programs:
            programs[quality] = jax.jit(lambda *args: self._refine_for_jpeg(quality, *args))
        return np.asarray(programs[quality](self._variables, key, jnp.asarray(x01, jnp.float32), jnp.asarray(start01, jnp.float32), labels))

    def _refine_for_jpeg(self, quality, variables, key, x01, start01, labels):
        from ppjax.ops.jpeg import jpeg_round_trip

        behind = tuple(
            attacks.Target(lambda v, x, apply=t.apply: apply(v, jpeg_round_trip(x, quality)), t.variables, t.objective)
            for t in self._bound(variables)[0]
        )
        q = _quantise255(self._lattice_refinement(behind)(key, x01, labels, start=start01), jnp.rint(x01 * 255.0), self.eps, self.min_psnr)
        return q / 255.0

    def refine_channel(self, key: jax.Array, x01, start01, labels) -> np.ndarray:
        """``steps`` more sign steps of 1/255 from ``start01`` (what was written last), through the
        channel's draws, within the budget around the originals ``x01``; on the lattice. For images
        the real channel showed unprotected (:meth:`panel_leads`); images already past the margin on
        every draw do not change."""
        if self.channel == "exact":
            raise ValueError("refine_channel needs channel='social'")
        return np.asarray(self._programs["refine_channel"](self._variables, key, jnp.asarray(x01, jnp.float32), jnp.asarray(start01, jnp.float32), labels))

    def _refine_channel(self, variables, key, x01, start01, labels):
        targets = self._bound(variables)[0]
        refine = self._lattice_refinement(targets, self._draws(x01.shape), steps=self.steps)
        return _quantise255(refine(key, x01, labels, start=start01), jnp.rint(x01 * 255.0), self.eps, self.min_psnr) / 255.0

    def panel_leads(self, views01, labels) -> np.ndarray:
        """(M,) smallest lead over the targets of (M, h, w, 3) images as their classifiers see them
        (e.g. a written file through the real channel), against ``labels`` (one (M,) array per
        target); > 0 is protected."""
        return np.asarray(self._programs["leads"](self._variables, jnp.asarray(views01, jnp.float32), tuple(labels)))

    def top1(self, x01) -> tuple[np.ndarray, ...]:
        """Each target's (N,) top-1 class of (N, h, w, 3) images as its classifier sees them."""
        return tuple(np.asarray(y) for y in self._programs["labels"](self._variables, jnp.asarray(x01, jnp.float32)))

    def verify(self, x01, labels) -> np.ndarray:
        """Protected flags for images (e.g. decoded from the written files), float [0, 1]."""
        return np.asarray(self._programs["status"](self._variables, jnp.asarray(x01, jnp.float32), labels))
