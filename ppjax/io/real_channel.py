"""The real channel on Pillow: what a platform and an attacker actually do to a shared file.

The counterpart of :mod:`ppjax.ops.channel`, used to *judge* protection: a written file is decoded
and passed through each :class:`~ppjax.ops.channel.Variant` of a panel with the real libraries
(Pillow's resize and libjpeg's encoder and decoder; torchvision's ``Resize`` and ``CenterCrop`` on
a PIL image are these same calls), never through the differentiable stand-ins the attack used.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

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


def _shared_stage(img: Image.Image, variant: Variant) -> Image.Image:
    """What the platform hands on: shrunk to ``variant.platform`` (bicubic) and re-encoded."""
    shrunk = platform_size(img.height, img.width, variant.platform)
    if shrunk is not None:
        img = img.resize((shrunk[1], shrunk[0]), Image.Resampling.BICUBIC)
    if variant.quality is not None:
        img = jpeg_reencode(img, variant.quality)
    return img


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
    return _view(_shared_stage(Image.fromarray(np.ascontiguousarray(rgb)), variant), variant)


def apply_real_panel(rgb: np.ndarray, variants) -> list[np.ndarray]:
    """:func:`apply_real` for each of ``variants``, with each platform shrink and re-encode done
    once for all the views that share it (a 12-megapixel photo is shrunk 3 times, not 36)."""
    img = Image.fromarray(np.ascontiguousarray(rgb))
    stages: dict = {}
    out = []
    for v in variants:
        key = (v.platform, v.quality)
        if key not in stages:
            stages[key] = _shared_stage(img, v)
        out.append(_view(stages[key], v))
    return out
