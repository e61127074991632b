"""Models known to ppjax, all behind one contract.

A :class:`Model` bundles a pure ``apply(variables, x01)`` (pixels in [0, 1], NHWC, float32;
preprocessing happens inside) with its variables, labels and a :class:`ModelSpec`. Classifiers
return (N, C) logits over their classes; NIMA returns (N, 10) probabilities over its score bins
(``output``). Each model family's module provides ``load(model_dir) -> Model``, filling the Flax
module strictly from the converted ``weights.safetensors`` in the store.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ppjax.models.layers import ghostly
from ppjax.store.variables import flat_shapes, load_variables

__all__ = ["ModelSpec", "Model", "SHAPES", "abstract_shapes", "normalised_apply", "load_classifier"]

#: The file in a model's store folder that keeps its variables' shapes (:func:`abstract_shapes`).
SHAPES = "abstract-shapes.json"


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about a model.

    ``mean``/``std`` normalise [0, 1] RGB pixels per channel; ``native_size`` is the (square)
    input side in pixels the weights were trained or evaluated at. ``fixed_size``: a network that
    only takes that square side (the Places365 WideResNet18, whose pooling is fixed for 224) gets
    any other image resized to it first, as its original demo does (Pillow bilinear on 8-bit
    pixels); None: any size goes in as it is.
    """

    name: str
    description: str
    num_classes: int
    native_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fixed_size: int | None = None

    def normalise(self, x01: jnp.ndarray) -> jnp.ndarray:
        mean = jnp.asarray(self.mean, x01.dtype)
        std = jnp.asarray(self.std, x01.dtype)
        return (x01 - mean) / std


@dataclass(frozen=True)
class Model:
    """A loaded model. ``apply(variables, x01)`` maps (N, H, W, 3) [0, 1] pixels to (N, C) outputs:
    logits for classifiers (``output="logits"``), probabilities for NIMA's score bins."""

    spec: ModelSpec
    apply: Callable[[Any, jnp.ndarray], jnp.ndarray]
    variables: Any
    labels: tuple[str, ...]
    sensitive: frozenset[int] = frozenset()
    output: str = "logits"
    #: The Flax module ``apply`` runs (None for models built otherwise); see :meth:`with_skip_gradient`.
    module: Any = None

    def with_skip_gradient(self, gamma: float) -> "Model":
        """This model with SGM's ``gamma`` on its residual branches' gradients (forward unchanged;
        :func:`ppjax.models.layers.skip_gradient`). A network without residual blocks (DenseNet,
        MobileNet v1, NIMA) comes back as it is: it has no skip paths to favour."""
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"the skip gradient's gamma is in (0, 1], got {gamma}")
        fields = getattr(type(self.module), "__dataclass_fields__", {})
        if gamma == 1.0 or "skip_gradient" not in fields:
            return self
        return replace(self, apply=normalised_apply(self.module.clone(skip_gradient=gamma), self.spec))

    @property
    def has_ghost(self) -> bool:
        """Whether ``apply`` takes a ghost network's skip erosion (``apply(variables, x01, ghost=g)``,
        :class:`ppjax.models.layers.Ghost`): networks with residual blocks; the others have no skip
        paths to erode."""
        call = getattr(type(self.module), "__call__", None)
        return call is not None and "ghost" in inspect.signature(call).parameters

    def logits(self, x01: jnp.ndarray) -> jnp.ndarray:
        return self.apply(self.variables, x01)

    def compiled(self, then: Callable[[jnp.ndarray], jnp.ndarray] | None = None) -> Callable[[Any], jnp.ndarray]:
        """Jitted ``fn(x01) -> outputs`` (``then(outputs)`` when given, e.g. a softmax) bound to
        this model's weights, which enter the program as an argument, not as constants."""
        fn = jax.jit(lambda variables, x01: (then or (lambda y: y))(self.apply(variables, x01)))
        return lambda x01: fn(self.variables, jnp.asarray(x01))


def abstract_shapes(module, size: int, kept: Path | None = None) -> dict[str, tuple[int, ...]]:
    """Flat variable key -> shape of ``module`` for (1, size, size, 3) inputs, computed abstractly.

    ``kept``: a JSON file that keeps them for later processes, under a key made of the module's
    settings, ``size``, JAX's version and ppjax's source: tracing a network's ``init`` took half
    a second of every command that loads EfficientNet-Lite0 (its load 1.24 -> 0.75 s on a 2-core
    CPU), reading the file a millisecond. A missing, damaged or unwritable file only costs the trace.
    """
    from ppjax.store.programs import read_json_table

    key = None if kept is None else _shapes_key(module, size)
    table = {} if kept is None else read_json_table(kept)
    if key in table:
        return {name: tuple(shape) for name, shape in table[key].items()}
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    shapes = flat_shapes(jax.eval_shape(partial(module.init, jax.random.key(0)), x))
    if kept is not None:
        from ppjax.store.programs import write_atomically

        newest = dict(list(table.items())[-(_KEPT_SHAPES - 1) :])  # the newest few, and this one
        try:
            write_atomically(kept, json.dumps({**newest, key: shapes}).encode())
        except OSError:  # a read-only store: trace again next time
            pass
    return shapes


#: Entries a model folder's shapes file keeps (each dtype and each ppjax version is one).
_KEPT_SHAPES = 4


def _shapes_key(module, size: int) -> str:
    from ppjax.store.programs import source_digest

    text = json.dumps([repr(module), size, jax.__version__, source_digest()])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def normalised_apply(module, spec: ModelSpec) -> Callable[[Any, jnp.ndarray], jnp.ndarray]:
    """Pure ``apply(variables, x01, ghost=None) -> logits`` with ``spec``'s normalisation inside;
    ``ghost`` (a :class:`ppjax.models.layers.Ghost`, for modules that take one) erodes the skip
    paths, None is the network itself."""

    def apply(variables, x01, ghost=None):
        if spec.fixed_size is not None and x01.shape[1:3] != (spec.fixed_size, spec.fixed_size):
            from ppjax.ops.resample import resize

            x01 = resize(x01, (spec.fixed_size, spec.fixed_size), "bilinear")
        return module.apply(variables, spec.normalise(x01), **ghostly(ghost))

    return apply


def load_classifier(model_dir: str | Path, spec: ModelSpec, module, labels: tuple[str, ...], sensitive=frozenset()) -> Model:
    """A :class:`Model` from a store folder's ``weights.safetensors``, filled strictly into ``module``."""
    expected = abstract_shapes(module, spec.native_size, kept=Path(model_dir) / SHAPES)
    variables = jax.tree_util.tree_map(jnp.asarray, load_variables(Path(model_dir) / "weights.safetensors", expected))
    return Model(spec=spec, apply=normalised_apply(module, spec), variables=variables, labels=labels, sensitive=frozenset(sensitive), module=module)
