"""A few fixed working canvases, so that the attack compiles once for every photo size.

Every photo's working copy (:mod:`ppjax.protect.files`: the photo itself, or a copy shrunk to a long
side of 1080) is placed at the top left of the smallest :data:`CANVASES` entry it fits; the rest of
the canvas is padding. Everything that depends on the photo's own size travels with it as data, a
:class:`Geometry`: its valid height and width, and the attacker's four resampling maps along each
axis (:func:`ppjax.ops.bands.view_bands`). The channel's draws read only valid pixels (the JPEG
pads by repeating the photo's own edge, as libjpeg does), the models see the photo alone
(:mod:`ppjax.models.masked`), and the change is kept at zero over the padding, so a photo's result
on a canvas is the result for the photo itself, and padding never reaches a file.

A photo whose working copy fits no canvas (a strip with a side under 128 pixels and a long side
over 512, whose views would need more transposed taps than the large canvas holds) gets a canvas of
its own size (:func:`own_canvas`), compiled for it alone; so do all photos where terms on the image
itself (appeal, perceptual penalties) take part, since those see the whole canvas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ppjax.ops.bands import BandSet, taps_needed, view_bands

__all__ = ["EXACT_VIEW_MAX_SIDE", "Canvas", "CANVASES", "SHRUNK_CANVAS", "SHARED_CANVASES", "Geometry", "canvas_for", "own_canvas", "geometry", "stack_geometry", "place"]

#: Photos with a long side of at most this many pixels may also be classified as they are (the
#: social channel's exact view): nobody runs a classifier on a 12-megapixel photo.
EXACT_VIEW_MAX_SIDE = 512
@dataclass(frozen=True)
class Canvas:
    """A working canvas of ``height`` x ``width`` pixels; its views carry ``taps`` resampling taps
    per output and ``t_taps`` transposed taps (0: gradients by scatter, see
    :func:`ppjax.ops.bands.apply_bands`); ``exact``: its photos are small enough to be classified
    whole, so the channel also draws them as they are."""

    height: int
    width: int
    taps: int
    t_taps: int
    exact: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def fits(self, h: int, w: int, whole: bool | None = None) -> bool:
        """Whether an (h, w) working copy can go on this canvas; ``whole``: whether its photo is
        small enough to be classified whole (None: the working copy is the photo's own size)."""
        whole = max(h, w) <= EXACT_VIEW_MAX_SIDE if whole is None else whole
        if h > self.height or w > self.width or self.exact != whole:
            return False
        need = [taps_needed(n) for n in (h, w)]
        return all(t <= self.taps and (not self.t_taps or tt <= self.t_taps) for t, tt in need)

    def label(self) -> str:
        return f"{self.width}x{self.height}"


#: The canvases, smallest first. Up to 512 (every photo classified whole too) gradients of the views
#: go by scatter, which takes any aspect; the large canvas holds the working copies of every larger
#: photo (long side 513 to 1080 pixels), with 8 transposed taps: any short side of 128 pixels or more
#: (thinner strips are shrunk onto the 256 canvas, :meth:`ppjax.protect.Protector.work_plan`).
#: The 320 canvas is there because the photo seen whole is classified on the whole canvas at every
#: step: a 299-pixel photo on the 384 canvas paid for 1.6 times its pixels (an attack step of
#: EfficientNet-Lite0, 2 cores: 176 ms on 384, 134 ms on 320).
CANVASES = (
    Canvas(256, 256, 7, 0, True),
    Canvas(320, 320, 7, 0, True),
    Canvas(384, 384, 9, 0, True),
    Canvas(512, 512, 11, 0, True),
    Canvas(1088, 1088, 21, 8, False),
)


#: The canvas of the edit methods' working copies of photos larger than
#: :data:`EXACT_VIEW_MAX_SIDE`, shrunk to a long side of 512 (:mod:`ppjax.protect.fullsize`): as
#: the 512 canvas, without the view of the photo classified whole.
SHRUNK_CANVAS = Canvas(512, 512, 11, 0, False)
#: Every canvas photos of many sizes share (one compiled program each), smallest first.
SHARED_CANVASES = tuple(sorted((*CANVASES, SHRUNK_CANVAS), key=lambda c: c.height * c.width))


def canvas_for(h: int, w: int, whole: bool | None = None) -> Canvas:
    """The smallest of :data:`CANVASES` (then :data:`SHRUNK_CANVAS`) an (h, w) working copy fits,
    else :func:`own_canvas`; ``whole`` as for :meth:`Canvas.fits`."""
    for canvas in SHARED_CANVASES:
        if canvas.fits(h, w, whole):
            return canvas
    return own_canvas(h, w, whole)


def own_canvas(h: int, w: int, whole: bool | None = None) -> Canvas:
    """A canvas of exactly an (h, w) working copy's size (no padding), as many taps as its views
    need, gradients by scatter; ``whole`` as for :meth:`Canvas.fits`."""
    whole = max(h, w) <= EXACT_VIEW_MAX_SIDE if whole is None else whole
    return Canvas(h, w, max(taps_needed(h)[0], taps_needed(w)[0]), 0, whole)


class Geometry(NamedTuple):
    """What a batch's photos bring to the program besides their pixels: ``valid`` (N, 2) int32, each
    photo's height and width on the canvas; ``rows``/``cols``, the views' maps along each axis
    (:class:`ppjax.ops.bands.BandSet`); ``extents``, per classifier, what its layers see of each photo
    (:func:`ppjax.models.masked.record_extents`, (N, K, 4) int32; empty where not needed)."""

    valid: np.ndarray
    rows: BandSet
    cols: BandSet
    extents: tuple = ()
    #: (N,) float32: each photo's working copy's size over its own (1 when it is the photo): how
    #: many of the photo's pixels one canvas pixel stands for, which sets the scale of what a
    #: person sees of a change (:mod:`ppjax.ops.mottle`).
    scale: np.ndarray | float = 1.0


def geometry(canvas: Canvas, h: int, w: int, scale: float = 1.0) -> Geometry:
    """One (h, w) photo's geometry on ``canvas`` (no batch axis, no extents); ``scale``: its
    working copy's size over the photo's own."""
    if not canvas.fits(h, w, canvas.exact) and canvas != own_canvas(h, w, canvas.exact):
        raise ValueError(f"a {w}x{h} photo does not fit the {canvas.label()} canvas")
    rows = view_bands(h, canvas.height, canvas.taps, canvas.t_taps)
    cols = view_bands(w, canvas.width, canvas.taps, canvas.t_taps)
    return Geometry(np.array([h, w], np.int32), rows, cols, scale=np.float32(scale))


def stack_geometry(parts: list[Geometry]) -> Geometry:
    """One batch's :class:`Geometry` from its photos' (a leading image axis on every array)."""
    stack = lambda items: type(items[0])(*(np.stack(a) for a in zip(*items)))  # noqa: E731
    extents = tuple(np.stack(e) for e in zip(*(p.extents for p in parts))) if parts[0].extents else ()
    scale = np.stack([np.float32(p.scale) for p in parts])
    return Geometry(np.stack([p.valid for p in parts]), stack([p.rows for p in parts]), stack([p.cols for p in parts]), extents, scale)


def place(images: list[np.ndarray], canvas: Canvas) -> np.ndarray:
    """(N, height, width, C) batch with each (h, w, C) image at the top left of ``canvas``; zeros
    elsewhere (never read)."""
    out = np.zeros((len(images), canvas.height, canvas.width, images[0].shape[-1]), images[0].dtype)
    for i, im in enumerate(images):
        out[i, : im.shape[0], : im.shape[1]] = im
    return out
