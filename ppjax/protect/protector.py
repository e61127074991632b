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
from ppjax.ops.canvas import CANVASES, EXACT_VIEW_MAX_SIDE, SHARED_CANVASES, Canvas, Geometry, canvas_for, geometry, own_canvas, place, stack_geometry
from ppjax.ops.channel import CHANNELS, ChannelDraws, canvas_targets, platform_size
from ppjax.models.masked import level_extents
from ppjax.edits import EditPipeline
from ppjax.protect.edit_run import protect_edit, run_edit
from ppjax.protect.fullsize import EDIT_WORK_MAX_SIDE, WORK_MAX_SIDE, fit_pixels, measure_tile
from ppjax.protect.jpeg_refine import refine_for_jpeg
from ppjax.protect.lattice import lattice_radius, quantise
from ppjax.protect.pixel_run import run_pixel, smallest_lead
from ppjax.store.programs import CachedProgram, ProgramCache, describe

__all__ = ["lattice_radius", "quantise", "Protector"]  # the first two re-exported from lattice


@dataclass(frozen=True, eq=False)
class Protector:
    """Jitted protection of (N, H, W, 3) float [0, 1] batches against ``targets``; immutable, so its
    compiled programs always match its settings (:func:`dataclasses.replace` makes a new one).

    ``method`` is a name in :data:`ppjax.attacks.METHODS` and ``options`` its own options (an
    unknown one raises here). Each target is attacked away from its own top-1 class on the
    original image. ``terms`` (appeal, perceptual penalties) go to the attack; the lattice
    refinement only looks at the classifiers.

    Under the social channel a batch is a stack of canvases (:meth:`canvas_for`, :meth:`layout`),
    so that one compiled program serves photos of every size that share a canvas: the attack, the
    lattice refinement and the channel's later rounds (:meth:`protect_canvas`) are that one program.
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
    #: or "social" (they see the draws of :class:`ppjax.ops.channel.ChannelDraws`).
    channel: str = "exact"
    #: Channel draws averaged per step with ``channel="social"``.
    channel_draws: int = 2
    #: Photos classified whole (:attr:`ppjax.ops.canvas.Canvas.exact`): the steps between two
    #: draws of the photo seen whole (:attr:`ppjax.ops.channel.ChannelDraws.whole_every`).
    whole_every: int = 1
    #: Transfer parts for the attack (input diversity, TI smoothing, momentum); None: none.
    transfer: attacks.Transfer | None = None
    #: PSNR floor in dB (None: none): every step, and the bytes returned, keep at least this PSNR
    #: against the original (see :func:`quantise`).
    min_psnr: float | None = None
    #: Where the traced programs are kept for later processes (:mod:`ppjax.store.programs`); its
    #: ``identity`` must name everything about ``targets`` and ``terms`` that their weights' shapes
    #: do not (models, objectives, fusion, term weights). None: traced in each process.
    program_cache: ProgramCache | None = None
    #: Per-pixel CIEDE2000 allowances inside the ``eps`` ball (None: the ball alone): the attack's
    #: steps, the lattice refinement and the bytes returned keep them.
    perceptual: attacks.PerceptualBudget | None = None
    #: Edit methods: the sliders the search starts from (a look, unbatched; None: no edit).
    look: Mapping[str, Any] | None = None
    _variables: Any = field(init=False, repr=False)
    _programs: dict = field(init=False, repr=False)
    #: (measure, fit) of :func:`ppjax.protect.fullsize.fit_allowance` under :attr:`perceptual`,
    #: traced once per machine like the others (None without a perceptual budget).
    fit_programs: Any = field(init=False, repr=False)
    #: (canvas shape, batch size) of the programs this process has run.
    _warm: set = field(init=False, repr=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "targets", tuple(self.targets))
        set_(self, "terms", tuple(self.terms))
        set_(self, "options", MappingProxyType(dict(self.options)))
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {self.channel!r}")
        if self.is_edit and self.channel != "social":
            raise ValueError(f"the {self.method} method runs under the social channel (its result is verified on the written file there)")
        self._attack(self.targets, self.terms, self._draws(True))  # unknown methods and options raise now, not at the first batch
        # The weights go into the compiled programs as arguments, not as captured constants: the
        # persistent cache then holds a few MB per canvas rather than the models' size. On the
        # device once, so that NumPy weights are not copied over again on every call.
        set_(self, "_variables", jax.device_put(attacks.variables_of(self.targets, self.terms)))
        settings = {
            "method": self.method, "eps": self.eps, "steps": self.steps, "early_stop": self.early_stop, "lattice_steps": self.lattice_steps,
            "margin": self.margin, "options": dict(self.options), "channel": self.channel, "channel_draws": self.channel_draws,
            **({"whole_every": self.whole_every} if self.whole_every != 1 else {}),
            "transfer": describe(self.transfer), "min_psnr": self.min_psnr, "perceptual": describe(self.perceptual),
        }  # fmt: skip

        def cached(name, fn, **jit_options):
            return CachedProgram(jax.jit(fn, **jit_options), {**settings, "program": name}, self.program_cache)

        programs = {
            "run": cached("run", functools.partial(run_edit if self.is_edit else run_pixel, self), static_argnames=("exact",)),
            "status": jax.jit(self._status),
            "jpeg": {},
            "leads": cached("leads", self._leads),
            "labels": cached("labels", self._labels_of),
            "canvas_leads": cached("canvas_leads", self._canvas_leads),
            "canvas_labels": cached("canvas_labels", self._canvas_labels),
        }
        set_(self, "_programs", programs)
        set_(self, "_warm", set())
        fit = None
        if self.perceptual is not None:  # the full-size fit's two programs depend on the budget alone
            budget = {"perceptual": describe(self.perceptual)}
            measure = functools.partial(measure_tile, flat=self.perceptual.flat, busy=self.perceptual.busy)
            fit = (
                CachedProgram(jax.jit(measure), {**budget, "program": "fit_measure"}, self.program_cache),
                CachedProgram(jax.jit(fit_pixels), {**budget, "program": "fit_pixels"}, self.program_cache),
            )
        set_(self, "fit_programs", fit)

    @property
    def is_edit(self) -> bool:
        """Whether the method optimises an edit's sliders (:data:`ppjax.attacks.EDIT_METHODS`)."""
        return self.method in attacks.EDIT_METHODS

    @property
    def pipeline(self) -> EditPipeline | None:
        """The edit methods' :class:`ppjax.edits.EditPipeline` (None for pixel methods)."""
        return EditPipeline(attacks.METHODS[self.method].edit) if self.is_edit else None

    def _draws(self, exact: bool) -> ChannelDraws | None:
        """The channel's draws for canvases whose photos are (``exact``) or are not classified whole;
        None for the exact channel."""
        if self.channel == "exact":
            return None
        return ChannelDraws(self.channel_draws, exact=exact, whole_every=self.whole_every)

    def _attack(self, targets, terms, draws, context=None):
        """The attack; ``context``: the originals' :func:`ppjax.attacks.budget_context` under the
        perceptual budget, when the caller has it (the attack must then be given those originals)."""
        return attacks.build(
            self.method, targets, terms=terms, eps=self.eps, steps=self.steps, early_stop=self.early_stop,
            stop_margin=self.margin, channel=draws, transfer=self.transfer, min_psnr=self.min_psnr, perceptual=self.perceptual,
            **({"perceptual_context": context} if context is not None else {}), **self.options,
        )  # fmt: skip

    def _bound(self, variables):
        """(targets, terms) holding ``variables``, the traced weights inside a jitted function."""
        return attacks.bind(self.targets, self.terms, variables)

    def _lattice_refinement(self, targets, draws=None, steps=None, context=None):
        """Whole-level steps from a written result; ``context`` as for :meth:`_attack`."""
        if self.perceptual is None:
            rule, ball = attacks.sign_step(), attacks.linf_ball(lattice_radius(self.eps))
        else:
            rule, ball = attacks.perceptual_lattice_step(context), attacks.perceptual_ball(self.perceptual, lattice_radius(self.eps), context)
        return attacks.iterate(
            targets, rule, attacks.with_psnr_floor(ball, self.min_psnr),
            steps=self.lattice_steps if steps is None else steps, step_size=1.0, stop_margin=self.margin, channel=draws,
        )  # fmt: skip

    # -- canvases ------------------------------------------------------------------------------

    def canvas_for(self, h: int, w: int, whole: bool | None = None) -> Canvas:
        """The canvas an (h, w) working copy is protected on: a shared one of
        :data:`ppjax.ops.canvas.CANVASES` under the social channel, else one of its own size (the
        exact channel classifies each photo at its size; terms on the image see the whole canvas).
        ``whole``: whether its photo is classified whole (None: the copy is the photo's size)."""
        if self.channel == "exact" or self.terms:
            return own_canvas(h, w, whole)
        return canvas_for(h, w, whole)

    def photo_canvas(self, h: int, w: int) -> Canvas:
        """The canvas an (h, w) photo is protected on under the social channel: its working copy's
        (:func:`ppjax.protect.fullsize.working_copy` as :meth:`work_plan` says)."""
        side, whole = self.work_plan(h, w)
        return self.canvas_for(*(platform_size(h, w, side) or (h, w)), whole=whole)

    def work_plan(self, h: int, w: int) -> tuple[int, bool]:
        """(the long side an (h, w) photo's working copy is shrunk to when larger, whether the photo is
        classified whole) under the social channel: :attr:`work_side` and whether it is small
        enough to be, except for a strip too thin for the large canvas's transposed taps (under
        about 128 pixels across at the working size). Such a strip is shrunk to the smallest
        canvas's side (256) and drawn whole as well (one view more than it needs), so that it
        shares the cheapest program rather than compiling one of its own size: any set of photo
        sizes needs at most the four shared programs. (The classifiers see 224 pixels along its
        length; across, a strip 3 pixels wide keeps 1.)"""
        whole = max(h, w) <= EXACT_VIEW_MAX_SIDE
        work = platform_size(h, w, self.work_side) or (h, w)
        if whole or self.channel == "exact" or self.terms or canvas_for(*work, whole) in SHARED_CANVASES:
            return self.work_side, whole
        return CANVASES[0].height, True

    @property
    def work_side(self) -> int:
        """The long side (pixels) larger photos are shrunk to for the attack under the social
        channel (:mod:`ppjax.protect.fullsize`)."""
        pure_edit = self.is_edit and not attacks.METHODS[self.method].hybrid
        return EDIT_WORK_MAX_SIDE if pure_edit else WORK_MAX_SIDE

    def is_warm(self, canvas: Canvas, batch: int) -> bool:
        """Whether this process has run the program for ``batch`` photos on ``canvas`` already."""
        return (canvas.shape, batch, canvas.exact) in self._warm

    def layout(self, canvas: Canvas, images: Sequence[np.ndarray], scales: Sequence[float] | None = None) -> tuple[np.ndarray, Geometry]:
        """(canvas batch, its :class:`~ppjax.ops.canvas.Geometry`) for (h, w, 3) images on ``canvas``:
        with, per classifier, the extents each photo has in its layers when classified whole.
        ``scales``: each image's size over its photo's (a working copy shrunk from it; None: 1)."""
        parts = []
        for k, im in enumerate(images):
            h, w = im.shape[:2]
            g = geometry(canvas, h, w, 1.0 if scales is None else scales[k])
            if canvas.exact and self.channel != "exact":
                g = g._replace(extents=tuple(self._extents(t, h, w, canvas) for t in self.targets))
            parts.append(g)
        return place(list(images), canvas), stack_geometry(parts)

    @staticmethod
    def _extents(target, h: int, w: int, canvas: Canvas) -> np.ndarray:
        if target.fixed_size is not None:  # classified through its own resize: no layers to mask
            return np.zeros((1, 2), np.int32)
        return level_extents(target.apply, target.variables, h, w, canvas.shape)

    # -- the program (:mod:`ppjax.protect.pixel_run`, :mod:`ppjax.protect.edit_run`) ------------

    def protect_canvas(self, keys, x01, geometry: Geometry, start01=None, *, exact: bool) -> tuple[np.ndarray, tuple, np.ndarray]:
        """The social channel's program on a canvas batch ((N, S, S', 3) in [0, 1], from
        :meth:`layout`): (protected batch on the uint8 lattice, labels per target, (N,) leads: each
        image's smallest over the targets and a cycle of draws, in logits). Without
        ``start01`` the attack runs from the originals; with it (what was written last) only the
        lattice refinement, for ``steps`` steps through the draws (the later rounds, for images
        the real channel showed unprotected; images already past the margin on every draw do not
        change). ``exact``: the canvas's :attr:`~ppjax.ops.canvas.Canvas.exact`."""
        x01 = jnp.asarray(x01, jnp.float32)
        if start01 is None:
            start, attack_steps, refine_steps = x01, self.steps, self.lattice_steps
        else:
            start, attack_steps, refine_steps = jnp.asarray(start01, jnp.float32), 0, self.steps
        geometry = jax.tree_util.tree_map(jnp.asarray, geometry)
        q, labels, leads = self._programs["run"](self._variables, keys, x01, geometry, start, jnp.int32(attack_steps), jnp.int32(refine_steps), exact=exact)
        self._warm.add((x01.shape[1:3], x01.shape[0], exact))
        return np.asarray(q), labels, np.asarray(leads)

    def protect_edit(self, keys, x01, geometry: Geometry, params=None, *, exact: bool):
        """:meth:`protect_canvas` for the edit methods (:func:`ppjax.protect.edit_run.protect_edit`)."""
        return protect_edit(self, keys, x01, geometry, params, exact=exact)

    # -- the whole-batch API -------------------------------------------------------------------

    def _status(self, variables, x01, labels):
        return smallest_lead(self._bound(variables)[0], x01, labels) > 0.0

    def _leads(self, variables, x01, labels):
        return smallest_lead(self._bound(variables)[0], x01, labels)

    def _labels_of(self, variables, x01):
        return tuple(jnp.argmax(t.apply(t.variables, x01), axis=-1) for t in self._bound(variables)[0])

    def _canvas_leads(self, variables, x01, geometry, labels):
        return smallest_lead(canvas_targets(self._bound(variables)[0], geometry), x01, labels)

    def _canvas_labels(self, variables, x01, geometry):
        return tuple(jnp.argmax(t.apply(t.variables, x01), axis=-1) for t in canvas_targets(self._bound(variables)[0], geometry))

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
        """(protected batch on the uint8 lattice, labels per target, protected-as-computed flags)
        for an (N, H, W, 3) batch of one size (under the social channel, on a canvas of its own).

        ``key``: one key for the batch, or (N,) keys, one per image.
        """
        x01 = np.asarray(x01, np.float32)
        n, h, w = x01.shape[:3]
        keys = attacks.per_image_keys(key, n)
        if self.channel == "exact":
            geometry, exact = None, False
            start = jnp.asarray(x01)
        else:
            canvas = own_canvas(h, w)
            x01, geometry = self.layout(canvas, list(x01))
            exact, start = canvas.exact, None
        if geometry is None:
            q, labels, leads = self._programs["run"](
                self._variables, keys, jnp.asarray(x01), None, start, jnp.int32(self.steps), jnp.int32(self.lattice_steps)
            )  # fmt: skip
            self._warm.add((x01.shape[1:3], n, own_canvas(h, w).exact))  # as the exact channel's canvas_for says
            return np.asarray(q), labels, np.asarray(leads) > 0.0
        q, labels, leads = self.protect_canvas(keys, x01, geometry, exact=exact)
        return q, labels, leads > 0.0

    def refine_for_jpeg(self, key: jax.Array, x01, start01, labels, quality: int) -> np.ndarray:
        """:func:`ppjax.protect.jpeg_refine.refine_for_jpeg` with this protector."""
        return refine_for_jpeg(self, key, x01, start01, labels, quality)

    def panel_leads(self, views01, labels) -> np.ndarray:
        """(M,) smallest lead over the targets of (M, h, w, 3) images as their classifiers see them
        (e.g. a written file through the real channel), against ``labels`` (one (M,) array per
        target); > 0 is protected."""
        return np.asarray(self._programs["leads"](self._variables, jnp.asarray(views01, jnp.float32), tuple(labels)))

    def top1(self, x01) -> tuple[np.ndarray, ...]:
        """Each target's (N,) top-1 class of (N, h, w, 3) images as its classifier sees them."""
        return tuple(np.asarray(y) for y in self._programs["labels"](self._variables, jnp.asarray(x01, jnp.float32)))

    def canvas_leads(self, x01, geometry: Geometry, labels) -> np.ndarray:
        """:meth:`panel_leads` of photos classified whole on a canvas batch (:meth:`layout`)."""
        g = jax.tree_util.tree_map(jnp.asarray, geometry)
        return np.asarray(self._programs["canvas_leads"](self._variables, jnp.asarray(x01, jnp.float32), g, tuple(labels)))

    def canvas_top1(self, x01, geometry: Geometry) -> tuple[np.ndarray, ...]:
        """:meth:`top1` of photos classified whole on a canvas batch (:meth:`layout`)."""
        g = jax.tree_util.tree_map(jnp.asarray, geometry)
        return tuple(np.asarray(y) for y in self._programs["canvas_labels"](self._variables, jnp.asarray(x01, jnp.float32), g))

    def verify(self, x01, labels) -> np.ndarray:
        """Protected flags for images (e.g. decoded from the written files), float [0, 1]."""
        return np.asarray(self._programs["status"](self._variables, jnp.asarray(x01, jnp.float32), labels))
