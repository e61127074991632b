"""Score image files for aesthetic appeal with NIMA: mean and spread of the 1..10 score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.batching import map_image_files
from ppjax.io import ImageReadError
from ppjax.models.nima import NimaModel, score_moments


@dataclass(frozen=True)
class Score:
    file: Path
    mean: float
    std: float
    dist: tuple[float, ...]  # probabilities of scores 1..10

    def to_json(self) -> dict:
        return {"file": str(self.file), "mean": self.mean, "std": self.std, "dist": list(self.dist)}


def score_files(model: NimaModel, files: Iterable[str | Path], *, max_batch: int = 16) -> Iterator[Score | ImageReadError]:
    """Yield, in input order, a :class:`Score` or the :class:`ImageReadError` of each file."""
    dist_fn = jax.jit(model.apply)
    for item in map_image_files(lambda x01: dist_fn(model.variables, jnp.asarray(x01)), list(files), max_batch):
        if isinstance(item, ImageReadError):
            yield item
            continue
        image, dist = item
        mean, std = score_moments(np.asarray(dist, np.float64))
        yield Score(image.path, float(mean), float(std), tuple(float(p) for p in dist))
