"""Classify image files with a store model: top-k classes per image, sensitive-group flag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.batching import bucket_size, group_batches, pad_batch
from ppjax.io import ImageReadError, LoadedImage, read_image, resize_shorter_side, to_float01
from ppjax.models import Model

__all__ = ["TopClass", "Prediction", "make_probabilities", "predict", "classify_files"]


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


def make_probabilities(model: Model):
    """Jitted ``probs(variables, x01) -> (N, C)`` softmax probabilities for (N, H, W, 3) [0, 1] pixels."""
    return jax.jit(lambda variables, x01: jax.nn.softmax(model.apply(variables, x01), axis=-1))


def predict(model: Model, probs_fn, images: list[np.ndarray], max_batch: int) -> np.ndarray:
    """Probabilities (len(images), C) for uint8 (H, W, 3) images of any sizes, batched by shape."""
    out = np.zeros((len(images), model.spec.num_classes), np.float32)
    for idx in group_batches(images, (im.shape for im in images), max_batch):
        x = to_float01(np.stack([images[i] for i in idx]))
        p = probs_fn(model.variables, jnp.asarray(pad_batch(x, bucket_size(len(idx), max_batch))))
        out[idx] = np.asarray(p)[: len(idx)]
    return out


def classify_files(
    model: Model,
    files: Iterable[str | Path],
    *,
    top_k: int = 5,
    max_batch: int = 16,
    size: int = 0,
) -> Iterator[Prediction | ImageReadError]:
    """Yield, in input order, a :class:`Prediction` or the :class:`ImageReadError` of each file.

    ``size`` > 0 resizes each image so its shorter side is ``size`` pixels before classifying;
    0 (default) classifies the pixels as they are, as the MediaEval protocol does.
    """
    if not 1 <= top_k <= model.spec.num_classes:
        raise ValueError(f"top_k must be in 1..{model.spec.num_classes}")
    probs_fn = make_probabilities(model)
    files = list(files)
    chunk = max_batch * 4  # bounds memory: a chunk of decoded images at a time
    for start in range(0, len(files), chunk):
        loaded: list[LoadedImage | ImageReadError] = []
        for f in files[start : start + chunk]:
            try:
                loaded.append(read_image(f))
            except ImageReadError as e:
                loaded.append(e)
        ok = [im for im in loaded if isinstance(im, LoadedImage)]
        pixels = [resize_shorter_side(im.rgb, size) if size else im.rgb for im in ok]
        probs = iter(predict(model, probs_fn, pixels, max_batch)) if ok else iter(())
        for item in loaded:
            if isinstance(item, ImageReadError):
                yield item
                continue
            p = next(probs)
            order = np.argsort(-p, kind="stable")[:top_k]
            top = tuple(TopClass(int(i), model.labels[i], float(p[i])) for i in order)
            yield Prediction(item.path, top, int(order[0]) in model.sensitive)
