"""An edit pipeline: some of tone, local, curves and grade, applied in that order, as one pure function.

``params`` is ``{part: {slider: array}}`` for the pipeline's parts. :meth:`EditPipeline.apply`
takes (N, H, W, 3) pixels in [0, 1] and parameters per image (a leading N axis) or one set for all;
photos may sit at the top left of larger canvases (``valid``: (N, 2) heights and widths), and the
parts outside a photo are left as they are. Clarity's radius follows each photo's own size, so the
same parameters give the same look at any resolution, and the local part reads its grid at each
pixel's position as a fraction of its photo's size; everything else is per pixel.

:func:`apply_full` applies parameters found on a working copy to the full-resolution photo: the
per-pixel parts exactly, clarity's base from the working copy's guided-filter coefficients
upsampled (the fast guided filter of He and Sun, 2015), in chunks of two fixed numbers of pixels
so that no program is compiled per photo size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ppjax.edits import curves, grade, local, tone
from ppjax.edits.colour import LUMA_WEIGHTS, luma
from ppjax.edits.guided import guided_coefficients, radius_for
from ppjax.edits.sliders import broadcast, from_normalised, identity, normalised, project

__all__ = ["PARTS", "EditPipeline", "pipeline", "apply_full", "positions", "flat_positions", "CHUNK"]

#: The parts in the order they apply.
PARTS = {"tone": tone, "local": local, "curves": curves, "grade": grade}
#: Pixels per call of the full-size program: large chunks, the rest (and small photos) in small
#: ones, so two compiled programs serve every size and a 299x299 photo is padded to 128 Ki pixels,
#: not 512 Ki.
CHUNK, SMALL_CHUNK = 1 << 19, 1 << 16


def _spans(n: int):
    """(start, length) of the chunks that cover ``n`` pixels."""
    start = 0
    while start < n:
        size = CHUNK if n - start > CHUNK - SMALL_CHUNK else SMALL_CHUNK
        yield start, size
        start += size


@dataclass(frozen=True)
class EditPipeline:
    """The edit made of ``parts`` (names in :data:`PARTS`, applied in that order)."""

    parts: tuple[str, ...]

    def __post_init__(self):
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise ValueError(f"an edit is made of some of {', '.join(PARTS)}; got {', '.join(self.parts) or 'none'}")
        object.__setattr__(self, "parts", tuple(p for p in PARTS if p in self.parts))

    @property
    def uses_detail(self) -> bool:
        return "tone" in self.parts or "local" in self.parts

    def identity(self) -> dict:
        return {p: identity(PARTS[p].SLIDERS) for p in self.parts}

    def project(self, params: dict) -> dict:
        return {p: project(PARTS[p].SLIDERS, params[p]) for p in self.parts}

    def normalised(self, params: dict) -> dict:
        return {p: normalised(PARTS[p].SLIDERS, params[p]) for p in self.parts}

    def from_normalised(self, u: dict) -> dict:
        return {p: from_normalised(PARTS[p].SLIDERS, u[p]) for p in self.parts}

    def batched(self, params: dict, n: int) -> dict:
        """``params`` with a leading axis of ``n`` images (one set repeated, or as given)."""
        return {p: broadcast(PARTS[p].SLIDERS, params[p], n) for p in self.parts}

    def coefficients(self, x01: jnp.ndarray, valid=None) -> jnp.ndarray:
        """(N, H, W, 2) clarity's guided-filter coefficients (mean_a, mean_b) on each photo's luma."""
        n, h, w = x01.shape[:3]
        valid = jnp.broadcast_to(jnp.asarray([h, w], jnp.int32), (n, 2)) if valid is None else jnp.asarray(valid)
        y = luma(x01)
        one = lambda g, hw: jnp.stack(guided_coefficients(g, radius_for(tone.CLARITY_RADIUS, hw[0], hw[1]), tone.CLARITY_EPS, hw[0], hw[1]), -1)  # noqa: E731
        return jax.vmap(one)(y, valid)

    def pointwise(self, params: dict, x: jnp.ndarray, detail: jnp.ndarray | None, pos: jnp.ndarray | None = None) -> jnp.ndarray:
        """One image's pixels (..., 3) through the parts with unbatched ``params``; ``detail``
        (...,): luma minus its base, for clarity; ``pos`` (..., 2): each pixel's (row, column) as
        fractions of the photo's height and width, for the local part. Clipped to [0, 1]."""
        for p in self.parts:
            if p == "tone":
                x = tone.pointwise(params[p], x, detail)
            elif p == "local":
                x = local.pointwise(params[p], x, detail, pos)
            else:
                x = PARTS[p].pointwise(params[p], x)
        return jnp.clip(x, 0.0, 1.0)

    def detail(self, x01: jnp.ndarray, valid=None) -> jnp.ndarray | None:
        """(N, H, W) each photo's luma minus its guided-filter base (what clarity scales); None
        when the pipeline has no tone part."""
        if not self.uses_detail:
            return None
        return self.detail_from(self.coefficients(x01, valid), x01)

    @staticmethod
    def detail_from(coefficients: jnp.ndarray, x01: jnp.ndarray) -> jnp.ndarray:
        """(N, H, W) luma minus its base, from :meth:`coefficients` already computed."""
        y = luma(x01)
        return y - (coefficients[..., 0] * y + coefficients[..., 1])

    def apply(self, params: dict, x01: jnp.ndarray, valid=None, detail=None) -> jnp.ndarray:
        """(N, H, W, 3) pixels in [0, 1] edited with ``params`` (per image or one set); outside each
        photo's ``valid`` extent the canvas is left as it is. ``detail``: :meth:`detail` of
        ``x01``, when already computed."""
        n = x01.shape[0]
        params = self.batched(params, n)
        if detail is None:
            detail = self.detail(x01, valid)
        _, h, w = x01.shape[:3]
        extent = jnp.broadcast_to(jnp.asarray([h, w], jnp.int32), (n, 2)) if valid is None else jnp.asarray(valid)
        pos = jax.vmap(lambda hw: positions(h, w, hw[0], hw[1]))(extent)
        out = jax.vmap(self.pointwise)(params, x01, detail, pos)
        if valid is None:
            return out
        from ppjax.attacks.projections import region

        return x01 + region(valid, x01.shape) * (out - x01)

    def describe(self, params: dict) -> str:
        """The applied edit in words ("exposure +0.12 EV, saturation +8%, ..."), or "no change"."""
        words = [w for p in self.parts for w in PARTS[p].describe(jax.tree_util.tree_map(np.asarray, params[p]))]
        return ", ".join(words) or "no change"


def _scale(h, w) -> jnp.ndarray:
    return jnp.stack([1.0 / jnp.maximum(h - 1, 1), 1.0 / jnp.maximum(w - 1, 1)]).astype(jnp.float32)


def positions(rows: int, cols: int, h, w) -> jnp.ndarray:
    """(rows, cols, 2) positions of a canvas's pixels as fractions of an (h, w) photo at its top
    left: (row / (h - 1), column / (w - 1))."""
    r, c = jnp.meshgrid(jnp.arange(rows), jnp.arange(cols), indexing="ij")
    return jnp.stack([r, c], -1).astype(jnp.float32) * _scale(h, w)


def flat_positions(start, count: int, h, w) -> jnp.ndarray:
    """(count, 2) positions (as :func:`positions`) of the flat pixel indices ``start`` .. ``start +
    count - 1`` of an (h, w) photo."""
    idx = start + jnp.arange(count)
    return jnp.stack([idx // w, idx % w], -1).astype(jnp.float32) * _scale(h, w)


def pipeline(method: str) -> EditPipeline:
    """The pipeline of an edit method: ``edit`` (all parts) or one part's name."""
    return EditPipeline(tuple(PARTS) if method == "edit" else (method,))


@functools.lru_cache(maxsize=8)
def _chunk_program(parts: tuple[str, ...]):
    pipe = EditPipeline(parts)
    return jax.jit(lambda params, x, detail, start, h, w: pipe.pointwise(params, x, detail, flat_positions(start, x.shape[0], h, w)))


def apply_full(pipe: EditPipeline, params: dict, full: np.ndarray, coefficients: np.ndarray | None = None) -> np.ndarray:
    """The (H, W, 3) uint8 photo ``full`` edited with unbatched ``params``, rounded to uint8.

    ``coefficients``: (h, w, 2) clarity coefficients from :meth:`EditPipeline.coefficients` on the
    working copy the parameters were found on (None: computed on ``full`` itself, for photos that
    are their own working copy)."""
    h, w = full.shape[:2]
    x = full.reshape(-1, 3).astype(np.float32) / 255.0
    detail = None
    if pipe.uses_detail:
        y = x @ np.asarray(LUMA_WEIGHTS, np.float32)
        if coefficients is None:  # on the host: no program compiled for this photo's size
            r = int(radius_for(tone.CLARITY_RADIUS, h, w))
            coefficients = np.stack(guided_coefficients(y.reshape(h, w), r, tone.CLARITY_EPS, xp=np), -1)
        planes = [np.asarray(Image.fromarray(np.ascontiguousarray(coefficients[..., k]), "F").resize((w, h), Image.Resampling.BILINEAR)) for k in range(2)]
        detail = y - (planes[0].reshape(-1) * y + planes[1].reshape(-1))
    program = _chunk_program(pipe.parts)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    out = np.empty((x.shape[0], 3), np.uint8)
    for start, size in _spans(x.shape[0]):
        part = x[start : start + size]
        m = part.shape[0]
        pad = lambda a: np.concatenate([a, np.zeros((size - m,) + a.shape[1:], a.dtype)]) if m < size else a  # noqa: E731
        d = None if detail is None else jnp.asarray(pad(detail[start : start + size]))
        edited = np.asarray(program(params, jnp.asarray(pad(part)), d, jnp.int32(start), jnp.int32(h), jnp.int32(w)))[:m]
        out[start : start + m] = np.clip(np.rint(edited * 255.0), 0, 255).astype(np.uint8)
    return out.reshape(h, w, 3)
