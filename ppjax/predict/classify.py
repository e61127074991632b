"""Classify image files with a store model: top-k classes per image, sensitive-group flag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import jax
import numpy as np

from ppjax.io.batching import map_image_files
from ppjax.io import ImageReadError, resize_shorter_side
from ppjax.models import Model

__all__ = ["TopClass", "Prediction", "make_probabilities", "classify_files"]


@dataclass(frozen=True)
class TopClass:
    index: int
    label: str
    prob: float


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image; ``sensitive``: the top-1 class is in the model's sensitive group."""

    file: Path
    top: tuple[TopClass, ...]
    sensitive: bool

    def to_json(self) -> dict:
        return {
            "file": str(self.file),
            "top": [{"index": t.index, "label": t.label, "prob": t.prob} for t in self.top],
            "sensitive": self.sensitive,
        }


def make_probabilities(model: Model, programs: str | Path | None = None):
    """Jitted ``probs(x01) -> (N, C)`` softmax probabilities for (N, H, W, 3) [0, 1] pixels, through
    a few programs shared by every photo size (:mod:`ppjax.models.any_size`; ``programs``: the
    folder that keeps them for later runs, None: none)."""
    from ppjax.models.any_size import any_size

    return any_size(model, lambda logits: jax.nn.softmax(logits, axis=-1), then_name="softmax", programs=programs)


def classify_files(
    model: Model,
    files: Iterable[str | Path],
    *,
    top_k: int = 5,
    max_batch: int = 16,
    size: int = 0,
    programs: str | Path | None = None,
) -> Iterator[Prediction | ImageReadError]:
    """Yield, in input order, a :class:`Prediction` or the :class:`ImageReadError` of each file.

    ``size`` > 0 resizes each image so its shorter side is ``size`` pixels before classifying;
    0 (default) classifies the pixels as they are, as the MediaEval protocol does. ``programs``:
    a folder that keeps the traced programs for later runs (:func:`make_probabilities`).
    """
    if not 1 <= top_k <= model.spec.num_classes:
        raise ValueError(f"top_k must be in 1..{model.spec.num_classes}")
    prepare = (lambda rgb: resize_shorter_side(rgb, size)) if size else None
    for item in map_image_files(make_probabilities(model, programs), list(files), max_batch, prepare):
        if isinstance(item, ImageReadError):
            yield item
            continue
        image, p = item
        order = np.argsort(-p, kind="stable")[:top_k]
        top = tuple(TopClass(int(i), model.labels[i], float(p[i])) for i in order)
        yield Prediction(image.path, top, int(order[0]) in model.sensitive)
