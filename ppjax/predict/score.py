"""Score image files for aesthetic appeal with NIMA: mean and spread of the 1..10 score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ppjax.io.batching import map_image_files
from ppjax.io import ImageReadError
from ppjax.models import Model
from ppjax.models.nima import score_moments


@dataclass(frozen=True)
class Score:
    file: Path
    mean: float
    std: float
    dist: tuple[float, ...]  # probabilities of scores 1..10

    def to_json(self) -> dict:
        return {"file": str(self.file), "mean": self.mean, "std": self.std, "dist": list(self.dist)}


def score_files(model: Model, files: Iterable[str | Path], *, max_batch: int = 16) -> Iterator[Score | ImageReadError]:
    """Yield, in input order, a :class:`Score` or the :class:`ImageReadError` of each file."""
    for item in map_image_files(model.compiled(), list(files), max_batch):
        if isinstance(item, ImageReadError):
            yield item
            continue
        image, dist = item
        mean, std = score_moments(np.asarray(dist, np.float64))
        yield Score(image.path, float(mean), float(std), tuple(float(p) for p in dist))
