"""The channel between "share" and "classify", as differentiable transforms with real counterparts.

A shared photo is not what a classifier sees. The platform may shrink it (long side at most
``platform`` pixels, Pillow bicubic) and re-encode it as JPEG (4:2:0, at some quality); then the
attacker's own preprocessing resizes it to the network's input (the *view*):

- ``demo``: the official Places365 demo (CSAILVision/places365 ``run_placesCNN_basic.py``):
  torchvision ``Resize((256, 256))`` (aspect not kept) then ``CenterCrop(224)``;
- ``direct``: ``Resize((224, 224))``;
- ``exact``: the file's pixels as they are (the MediaEval 2019 protocol: 256x256 images fed
  whole, no resize). Under the social channel only photos of at most :data:`EXACT_VIEW_MAX_SIDE`
  pixels are seen this way: nobody runs a classifier on a 12-megapixel photo.

torchvision resizes PIL images with Pillow's antialiased filters, so a view is
:func:`ppjax.ops.resample.resize` with the attacker's ``filter``; the platform's JPEG is
:func:`ppjax.ops.jpeg.jpeg_round_trip`. A :class:`Variant` names one path through the channel; its
real counterpart, on Pillow, is :func:`ppjax.io.real_channel.apply_real`. :func:`panel` is the fixed
set of variants a protected file is verified on; :class:`ChannelDraws` is the random expectation
the attack averages its gradient over.

Pixels are float32 (N, H, W, 3) in [0, 1]; JPEG qualities are libjpeg's 1..100.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppjax.ops.bands import VIEW_PAIRS, VIEW_SIDE, resize_view
from ppjax.ops.canvas import EXACT_VIEW_MAX_SIDE
from ppjax.ops.jpeg import jpeg_round_trip
from ppjax.ops.resample import FILTERS, center_crop, resize

__all__ = [
    "VIEWS", "CHANNELS", "PLATFORM_SIDES", "EXACT_VIEW_MAX_SIDE", "PANEL_QUALITIES", "STRUCTURES", "REFERENCE_VIEW", "Variant",
    "platform_size", "view_size", "apply_variant", "panel", "DrawGroup", "ChannelDraws", "channel_draws", "canvas_targets",
]  # fmt: skip

#: The attacker's preprocessing: name -> ((height, width) to resize to, centre crop side or None).
VIEWS = {"demo": ((256, 256), 224), "direct": ((224, 224), None), "exact": (None, None)}
#: Threat models of ``--channel``.
CHANNELS = ("social", "exact")
#: Long-side limits of the platform panel (pixels); a photo not larger is not resized.
PLATFORM_SIDES = (2048, 1080)
#: JPEG re-encodes of the verification panel (None: the file as written).
PANEL_QUALITIES = (None, 90, 75)


@dataclass(frozen=True)
class Variant:
    """One path through the channel: ``platform`` (long-side limit in pixels, Pillow bicubic;
    None: not resized), ``quality`` (JPEG 4:2:0 re-encode; None: as written), the attacker's
    ``view`` (a key of :data:`VIEWS`) and its resize ``filter`` (bilinear, bicubic or lanczos)."""

    view: str = "exact"
    filter: str = "bilinear"
    quality: int | None = None
    platform: int | None = None

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {self.view!r}")
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {self.filter!r}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.quality}")
        if self.platform is not None and self.platform < 1:
            raise ValueError(f"platform long side must be positive, got {self.platform}")

    def label(self) -> str:
        """A short name, e.g. ``L1080 q75 demo/bicubic`` or ``as written, exact``."""
        parts = [f"L{self.platform}"] if self.platform else []
        parts.append(f"q{self.quality}" if self.quality else "as written")
        parts.append("exact" if self.view == "exact" else f"{self.view}/{self.filter}")
        return " ".join(parts)


def platform_size(h: int, w: int, limit: int | None) -> tuple[int, int] | None:
    """(height, width) after the platform's shrink to a long side of at most ``limit``, aspect kept
    (each side rounded, at least 1); None when the photo is not larger than ``limit``."""
    if limit is None or max(h, w) <= limit:
        return None
    scale = limit / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def view_size(h: int, w: int, view: str) -> tuple[int, int]:
    """(height, width) a ``view`` hands the classifier for an (h, w) image."""
    size, crop = VIEWS[view]
    if size is None:
        return h, w
    return (crop, crop) if crop else size


def apply_variant(x01: jnp.ndarray, variant: Variant, quality=None) -> jnp.ndarray:
    """(N, H, W, 3) through ``variant``, differentiably: what its classifier sees.

    ``quality`` overrides the variant's JPEG quality with a (possibly traced) int or (N,) ints,
    so one program serves every drawn quality; pass it only where the variant has a JPEG step.
    """
    n, h, w, _ = x01.shape
    x = x01
    shrunk = platform_size(h, w, variant.platform)
    if shrunk is not None:
        x = resize(x, shrunk, "bicubic")
    q = variant.quality if quality is None else quality
    if q is not None:
        x = jpeg_round_trip(x, q, "4:2:0")
    size, crop = VIEWS[variant.view]
    if size is not None:
        x = resize(x, size, variant.filter)
        if crop:
            x = center_crop(x, (crop, crop))
    return x


def _views(h: int, w: int) -> list[tuple[str, str]]:
    """(view, filter) pairs the social channel's attacker may use on an (h, w) photo."""
    pairs = [(view, filt) for view in ("demo", "direct") for filt in ("bilinear", "bicubic")]
    return pairs + ([("exact", "bilinear")] if max(h, w) <= EXACT_VIEW_MAX_SIDE else [])


def panel(channel: str, h: int, w: int) -> tuple[Variant, ...]:
    """The fixed variants a protected (h, w) file is verified on under ``channel``.

    ``exact``: the file itself. ``social``: {as written, JPEG q90, q75} x {demo, direct view} x
    {bilinear, bicubic}, plus the exact view for photos of at most :data:`EXACT_VIEW_MAX_SIDE`
    pixels, and for photos larger than a platform limit the same again after each platform shrink
    (:data:`PLATFORM_SIDES`)."""
    if channel == "exact":
        return (Variant("exact"),)
    if channel != "social":
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    platforms = [None] + [s for s in PLATFORM_SIDES if max(h, w) > s]
    return tuple(
        Variant(view, filt, quality, platform)
        for platform, quality, (view, filt) in itertools.product(platforms, PANEL_QUALITIES, _views(h, w))
        if view != "exact" or platform is None
    )


class DrawGroup(NamedTuple):
    """Copies of a batch that one set of bound targets classifies: ``pixels`` (k * N, h, w, 3),
    ``targets``, and ``active``: None when the group counts at every step, else a (traced) bool,
    whether it counts at this step (its objective and lead are skipped, not computed, when not)."""

    pixels: jnp.ndarray
    targets: tuple
    active: object = None


@dataclass(frozen=True)
class ChannelDraws:
    """The expectation over the channel that the attack's gradient is averaged over, for a batch of
    working copies on a canvas (:mod:`ppjax.ops.canvas`).

    Its :data:`STRUCTURES` are the four views of :data:`ppjax.ops.bands.VIEW_PAIRS`, each as written
    and after a JPEG 4:2:0 re-encode of the whole working copy (structure ``s`` is view ``s // 2``,
    JPEG when ``s`` is odd). At each attack step the ``draws`` structures ``(step * draws + d) mod 8``
    are used, so that every structure comes round equally often whatever the batch, and each image
    draws its JPEG quality uniformly from ``qualities`` (inclusive) from its own key, the step and
    ``d``. The images' draws thus depend only on their keys, never on the batch they are in. With
    ``exact``, every ``whole_every`` steps the image is also drawn as it is (every other time
    re-encoded: the step's first re-encoded draw, the same file seen whole), classified whole:
    photos of at most :data:`EXACT_VIEW_MAX_SIDE` pixels. With an even number of draws, which
    draws re-encode is the same at every step, so no step traces a JPEG it does not compute.

    The structure is a traced value selecting the views' maps and the JPEG step inside one program,
    so the channel is traced once per use, not once per structure. The working copy is the photo
    itself, or a copy shrunk to a long side of 1080 pixels, so the platform's own shrinks (long side
    2048 or 1080) never apply to it; the real channel's panel (:func:`panel`) checks them on the
    written file.
    """

    draws: int = 2
    qualities: tuple[int, int] = (70, 95)
    #: Also a draw of the image as it is (every other time JPEG-re-encoded): photos small enough
    #: to be classified whole.
    exact: bool = False
    #: With ``exact``, the steps between two draws of the image as it is: 1, every step; 2, every
    #: other step (its group is :attr:`DrawGroup.active` on those steps only, so that the other
    #: steps skip a forward and backward pass of the photo's whole canvas).
    whole_every: int = 1

    def __post_init__(self):
        if self.draws < 1:
            raise ValueError("a channel needs at least one draw per step")
        if self.whole_every < 1:
            raise ValueError(f"whole_every must be at least 1, got {self.whole_every}")
        lo, hi = self.qualities
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"JPEG quality range must be within 1..100, got {self.qualities}")

    @property
    def cycle(self) -> int:
        """Steps after which every structure (and, with ``exact``, both JPEG states of the whole
        image) has been drawn once: an attack stops early only after this many steps in a row
        with its margin."""
        return max(-(-STRUCTURES // self.draws), 2 * self.whole_every if self.exact else 1)

    @property
    def period(self) -> int:
        """Steps after which the structures drawn repeat (the JPEG qualities do not)."""
        p = STRUCTURES // math.gcd(STRUCTURES, self.draws)
        return math.lcm(p, 2 * self.whole_every) if self.exact else p

    def __call__(self, keys: jax.Array, step, x01: jnp.ndarray, geometry, targets=()) -> list:
        """Groups (:class:`DrawGroup`) of transformed copies of the (N, S, S', 3) canvas batch, each
        with the ``targets`` bound to classify them: the ``draws`` structures at the views' size,
        draw-major ((draws * N, 224, 224, 3)), then with ``exact`` the canvas itself, its photos
        classified alone (:func:`canvas_targets`), active every ``whole_every`` steps. ``keys``:
        (N,) per-image keys; ``step``: the attack step (may be traced); ``geometry``: the batch's
        :class:`ppjax.ops.canvas.Geometry`."""
        valid = jnp.asarray(geometry.valid)
        out, encoded = [], None
        for d in range(self.draws):
            index = (step * self.draws + d) % STRUCTURES
            if self.draws % 2 == 0:  # draw d re-encodes exactly when d is odd, whatever the step
                if d % 2:
                    seen = jpeg_round_trip(x01, self._qualities(keys, step, d), "4:2:0", valid)
                    encoded = seen if encoded is None else encoded
                else:
                    seen = x01
            else:
                q = self._qualities(keys, step, d)
                seen = jax.lax.cond(index % 2 == 1, lambda x: jpeg_round_trip(x, q, "4:2:0", valid), lambda x: x, x01)
            out.append(resize_view(seen, geometry.rows, geometry.cols, index // 2))
        groups = [DrawGroup(jnp.concatenate(out, axis=0), tuple(targets))]
        if self.exact:
            # Re-encoded every other time it is drawn: the step's first re-encoded draw when it has
            # one (the same file, seen whole), else a draw of its own.
            reencode = (step // self.whole_every) % 2 == 1
            if encoded is None:
                q = self._qualities(keys, step, self.draws)
                whole = jax.lax.cond(reencode, lambda x: jpeg_round_trip(x, q, "4:2:0", valid), lambda x: x, x01)
            else:
                whole = jnp.where(reencode, encoded, x01)
            active = None if self.whole_every == 1 else step % self.whole_every == 0
            groups.append(DrawGroup(whole, canvas_targets(targets, geometry), active))
        return groups

    def reference(self, x01: jnp.ndarray, geometry) -> jnp.ndarray:
        """(N, 224, 224, 3): the reference view (direct resize, bilinear) each classifier's label
        on the original is taken through."""
        return resize_view(x01, geometry.rows, geometry.cols, REFERENCE_VIEW)

    def _qualities(self, keys, step, d):
        """(N,) JPEG qualities, each from its image's key, the step and the draw."""
        qk = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, step), d))(keys)
        return jax.vmap(lambda k: jax.random.randint(k, (), self.qualities[0], self.qualities[1] + 1))(qk)


#: The social channel's structures: each view of :data:`ppjax.ops.bands.VIEW_PAIRS`, as written and re-encoded.
STRUCTURES = 2 * len(VIEW_PAIRS)
#: The view labels are taken through: the direct resize to 224, bilinear.
REFERENCE_VIEW = VIEW_PAIRS.index(("direct", "bilinear"))


def canvas_targets(targets, geometry) -> tuple:
    """``targets`` classifying each photo of a canvas batch as if alone: through
    :func:`ppjax.models.masked.masked_apply` with the geometry's extents, or, for a model that resizes
    any input to its fixed side itself (``Target.fixed_size``), through that resize of the photo
    (the direct bilinear view). A batch of k * N copies of the N photos (scale copies) is served too."""
    from ppjax.models.layers import ghostly
    from ppjax.models.masked import masked_apply

    def tiled(a, x):
        return jnp.tile(jnp.asarray(a), (x.shape[0] // a.shape[0],) + (1,) * (a.ndim - 1))

    bound = []
    for t, extents in zip(targets, geometry.extents, strict=True):
        if t.fixed_size is not None:
            if t.fixed_size != VIEW_SIDE:
                raise ValueError(f"a model of fixed side {t.fixed_size} cannot be classified whole on a canvas")

            def apply(v, x, ghost=None, apply=t.apply):
                rows, cols = (jax.tree_util.tree_map(lambda a: tiled(a, x), b) for b in (geometry.rows, geometry.cols))
                return apply(v, resize_view(x, rows, cols, REFERENCE_VIEW), **ghostly(ghost))
        else:

            def apply(v, x, ghost=None, apply=t.apply, extents=extents):
                return masked_apply(apply, v, x, tiled(extents, x), ghost)

        bound.append(t._replace(apply=apply))
    return tuple(bound)


def channel_draws(h: int, w: int, *, draws: int = 2, qualities: tuple[int, int] = (70, 95), whole_every: int = 1) -> ChannelDraws:
    """The ``social`` channel's draws for (h, w) working copies: the four views, each as written and
    re-encoded, and the exact view for photos of at most :data:`EXACT_VIEW_MAX_SIDE` pixels."""
    return ChannelDraws(draws, qualities, exact=max(h, w) <= EXACT_VIEW_MAX_SIDE, whole_every=whole_every)
