"""The real channel on Pillow: what a platform and an attacker actually do to a shared file.

The counterpart of :mod:`ppjax.ops.channel`, used to *judge* protection: a written file is decoded
and passed through each :class:`~ppjax.ops.channel.Variant` of a panel with the real libraries
(Pillow's resize and libjpeg's encoder and decoder; torchvision's ``Resize`` and ``CenterCrop`` on
a PIL image are these same calls), never through the differentiable stand-ins the attack used.
"""

from __future__ import annotations

import functools
import io
from concurrent.futures import Executor

import numpy as np
from PIL import Image

from ppjax.io.futures import run_on
from ppjax.ops.channel import VIEWS, Variant, platform_size

__all__ = ["PIL_FILTERS", "jpeg_reencode", "apply_real", "apply_real_panel"]

PIL_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def jpeg_reencode(img: Image.Image, quality: int) -> Image.Image:
    """``img`` saved as JPEG at ``quality`` with Pillow's defaults (4:2:0) and decoded again."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=2)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def _platform_shrink(img: Image.Image, platform: int | None) -> Image.Image:
    """``img`` shrunk to a long side of ``platform`` (bicubic) when it is larger; else ``img``."""
    shrunk = platform_size(img.height, img.width, platform)
    return img if shrunk is None else img.resize((shrunk[1], shrunk[0]), Image.Resampling.BICUBIC)


def _stage_views(shrunk: Image.Image, quality: int | None, variants) -> list[np.ndarray]:
    """The views of ``variants`` (all of one platform size and ``quality``) of the platform's
    ``shrunk`` photo: re-encoded once at ``quality`` (None: as it is), then each view. Safe to
    run on one ``shrunk`` from several threads at once."""
    # Encoding a copy: Image.save writes its options onto the image it saves.
    img = shrunk if quality is None else jpeg_reencode(shrunk.copy(), quality)
    return [_view(img, v) for v in variants]


def _view(img: Image.Image, variant: Variant) -> np.ndarray:
    """The attacker's preprocessing of what the platform handed on."""
    size, crop = VIEWS[variant.view]
    if size is not None:
        img = img.resize((size[1], size[0]), PIL_FILTERS[variant.filter])
        if crop:
            # torchvision's CenterCrop: offsets round((H - crop) / 2) with Python's rounding.
            top, left = int(round((img.height - crop) / 2.0)), int(round((img.width - crop) / 2.0))
            img = img.crop((left, top, left + crop, top + crop))
    return np.asarray(img)


def apply_real(rgb: np.ndarray, variant: Variant) -> np.ndarray:
    """(H, W, 3) uint8 through ``variant`` on Pillow: the (h, w, 3) uint8 its classifier sees."""
    return apply_real_panel(rgb, [variant])[0]


def _stage_groups(variants) -> dict[tuple, list[int]]:
    """The indices of ``variants`` by (platform size, quality): the variants of one group share
    their platform's shrink and its re-encode (:func:`_stage_views`)."""
    groups: dict = {}
    for i, v in enumerate(variants):
        groups.setdefault((v.platform, v.quality), []).append(i)
    return groups


def apply_real_panel(rgb: np.ndarray, variants, pool: Executor | None = None) -> list[np.ndarray]:
    """:func:`apply_real` for each of ``variants``, with each platform shrink done once for all the
    variants that share it and each re-encode once for all the views that share it (a
    12-megapixel photo is shrunk twice, not 24 times). On ``pool`` (Pillow releases the GIL while
    it resizes and encodes): one task per platform size and quality, the photo's own size's groups
    started while the shrinks run."""
    img = Image.fromarray(np.ascontiguousarray(rgb))
    submit = functools.partial(run_on, pool)
    groups = _stage_groups(variants)
    picked = lambda idx: [variants[i] for i in idx]  # noqa: E731
    futures = {key: submit(_stage_views, img, key[1], picked(idx)) for key, idx in groups.items() if key[0] is None}
    platforms = dict.fromkeys(platform for platform, _ in groups if platform is not None)
    shrinks = {platform: submit(_platform_shrink, img, platform) for platform in platforms}
    for key, idx in groups.items():
        if key[0] is not None:
            futures[key] = submit(_stage_views, shrinks[key[0]].result(), key[1], picked(idx))
    out: list = [None] * len(variants)
    for key, idx in groups.items():
        for i, view in zip(idx, futures[key].result()):
            out[i] = view
    return out
