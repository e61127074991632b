"""NIMA (Talebi & Milanfar 2018), the aesthetics model the Pixel Privacy task judged appeal with.

The network is titu1994's neural-image-assessment: a Keras backbone without top, global average
pooling, Dropout(0.75) (inactive at inference) and ``Dense(10, softmax)`` over the AVA score bins
1..10. Pixels in [0, 1] are scaled as Keras' MobileNet preprocessing does (x/127.5 - 1 on 0..255,
i.e. 2*x - 1). Everything here is differentiable: attacks use d(mean score)/d(pixels).

Input policies (``policy``):

* ``"as-is"`` (default): the image at its own size; the network pools globally. This is what
  titu1994's ``evaluate_mobilenet.py`` does unless run with ``-resize true``.
* ``"keras-224"``: first resized to 224x224 by nearest neighbour, as Keras' ``load_img(path,
  target_size=(224, 224))`` does by default (PIL's NEAREST sampling, reproduced exactly).

A backbone is one entry of :data:`BACKBONES`: its Flax module, its preprocessing and the size of its
features. Adding titu1994's NASNet-Mobile or InceptionResNetV2 weights means adding a module and an
entry here, plus a store entry; the Keras HDF5 conversion rule is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ppjax.store.variables import load_variables
from ppjax.models import Model, ModelSpec, abstract_shapes
from ppjax.models.mobilenet import MobileNet

__all__ = ["POLICIES", "BACKBONES", "Nima", "mean_score", "spec", "score_moments", "keras_nearest_resize", "expected_shapes", "load"]

POLICIES = ("as-is", "keras-224")
BINS = 10


@dataclass(frozen=True)
class Backbone:
    module: Callable[..., nn.Module]
    preprocess: Callable[[jnp.ndarray], jnp.ndarray]  # [0, 1] pixels -> network input
    native_size: int


BACKBONES: dict[str, Backbone] = {
    "mobilenet": Backbone(MobileNet, lambda x01: 2.0 * x01 - 1.0, 224),
}


class Nima(nn.Module):
    """Backbone, then ``dense`` (Keras' ``dense_1``) with softmax: (N, H, W, 3) -> (N, 10) probabilities."""

    backbone: str = "mobilenet"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        features = BACKBONES[self.backbone].module(dtype=self.dtype, name="backbone")(x)
        logits = nn.Dense(BINS, dtype=self.dtype, name="dense")(features)
        # At least float32 for the softmax (bfloat16 compute), float64 stays float64.
        return jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)


def score_moments(dist: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Mean and standard deviation of the score, from (..., 10) bin probabilities (scores 1..10)."""
    scores = jnp.arange(1, BINS + 1, dtype=dist.dtype)
    mean = jnp.sum(dist * scores, axis=-1)
    std = jnp.sqrt(jnp.sum(dist * (scores - mean[..., None]) ** 2, axis=-1))
    return mean, std


def _pil_nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel, exactly as Pillow's nearest-neighbour resize picks it.

    Pillow starts at 0.5 * scale and adds ``scale`` once per pixel in float64, truncating each
    sum; an exact x.0 can therefore land just below and pick the pixel before, so the sums are
    accumulated the same way here instead of computed as floor((i + 0.5) * scale).
    """
    scale = n_in / n_out
    steps = np.full(n_out, scale)
    steps[0] = 0.5 * scale
    return np.minimum(np.cumsum(steps).astype(np.int64), n_in - 1)


def keras_nearest_resize(x: jnp.ndarray, size: int) -> jnp.ndarray:
    """(N, H, W, C) -> (N, size, size, C) with the pixels PIL's NEAREST resize (Keras' load_img) picks.

    Differentiable in ``x`` (a gather); the index tables are static.
    """
    rows = _pil_nearest_indices(x.shape[1], size)
    cols = _pil_nearest_indices(x.shape[2], size)
    return x[:, rows][:, :, cols]


def mean_score(model, x01: jnp.ndarray) -> jnp.ndarray:
    """(N,) mean NIMA score (1..10) of a loaded NIMA :class:`~ppjax.models.Model`, differentiable in ``x01``."""
    return score_moments(model.apply(model.variables, x01))[0]


def spec(backbone: str = "mobilenet") -> ModelSpec:
    """NIMA's static facts: 10 score bins; its preprocessing (Keras MobileNet's 2x - 1) as mean/std."""
    return ModelSpec(
        name="nima", description=f"NIMA ({backbone}, AVA): probabilities of the scores 1..10", num_classes=BINS,
        native_size=BACKBONES[backbone].native_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    )  # fmt: skip


def make_apply(backbone: str = "mobilenet", policy: str = "as-is", dtype=jnp.float32):
    if policy not in POLICIES:
        raise ValueError(f"unknown input policy {policy!r}; choose one of {', '.join(POLICIES)}")
    spec = BACKBONES[backbone]
    module = Nima(backbone, dtype)

    def apply(variables, x01):
        if policy == "keras-224":
            x01 = keras_nearest_resize(x01, spec.native_size)
        return module.apply(variables, spec.preprocess(x01))

    return apply


def expected_shapes(backbone: str = "mobilenet") -> dict[str, tuple[int, ...]]:
    return abstract_shapes(Nima(backbone), BACKBONES[backbone].native_size)


def load(model_dir: str | Path, policy: str = "as-is", backbone: str = "mobilenet", dtype=jnp.float32) -> Model:
    """Load a converted NIMA from a store folder (``weights.safetensors``): a :class:`~ppjax.models.Model`
    whose ``apply`` gives (N, 10) score probabilities, seeing images as ``policy`` says."""
    variables = load_variables(Path(model_dir) / "weights.safetensors", expected_shapes(backbone))
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    labels = tuple(str(score) for score in range(1, BINS + 1))
    return Model(spec=spec(backbone), apply=make_apply(backbone, policy, dtype), variables=variables, labels=labels, output="probabilities")
