"""Models known to ppjax, all behind one contract.

A :class:`Model` bundles a pure ``apply(variables, x01) -> logits`` (pixels in [0, 1], NHWC,
float32; normalisation happens inside), its variables, class labels and a :class:`ModelSpec`.
Each model family's module provides ``load(model_dir) -> Model``, filling the Flax module strictly
from the converted ``weights.safetensors`` in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax.numpy as jnp

__all__ = ["ModelSpec", "Model"]


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about a model.

    ``mean``/``std`` normalise [0, 1] RGB pixels per channel; ``native_size`` is the (square)
    input side in pixels the weights were trained or evaluated at.
    """

    name: str
    description: str
    num_classes: int
    native_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def normalise(self, x01: jnp.ndarray) -> jnp.ndarray:
        mean = jnp.asarray(self.mean, x01.dtype)
        std = jnp.asarray(self.std, x01.dtype)
        return (x01 - mean) / std


@dataclass(frozen=True)
class Model:
    """A loaded classifier. ``apply(variables, x01)`` maps (N, H, W, 3) [0, 1] pixels to (N, C) logits."""

    spec: ModelSpec
    apply: Callable[[Any, jnp.ndarray], jnp.ndarray]
    variables: Any
    labels: tuple[str, ...]
    sensitive: frozenset[int] = frozenset()

    def logits(self, x01: jnp.ndarray) -> jnp.ndarray:
        return self.apply(self.variables, x01)
