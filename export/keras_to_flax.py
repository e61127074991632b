"""Read Keras-2 ``save_weights`` HDF5 files and map them onto a Flax variable tree.

The file layout (Keras 2.x, h5py): the root (or its ``model_weights`` group, for files written by
``model.save``) has an attribute ``layer_names``; each layer has a group with an attribute
``weight_names`` listing datasets such as ``conv_dw_1/depthwise_kernel:0``.

The rule, per Keras layer ``L`` and weight ``w`` (``prefix`` is given by the caller, e.g. the
backbone's submodule name, or ``dense`` for the head):

=====================  ==============================  ==========================================
Keras weight           Flax key                        array
=====================  ==============================  ==========================================
``kernel``             ``params/<prefix>/kernel``      as is (Conv2D HWIO and Dense (in, out)
                                                       already match Flax)
``depthwise_kernel``   ``params/<prefix>/kernel``      (kh, kw, C, 1) -> (kh, kw, 1, C)
``bias``, ``beta``     ``params/<prefix>/bias``        as is
``gamma``              ``params/<prefix>/scale``       as is
``moving_mean``        ``batch_stats/<prefix>/mean``   as is
``moving_variance``    ``batch_stats/<prefix>/var``    as is
=====================  ==============================  ==========================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ppjax.store.variables import CheckpointMismatchError
from ppjax.store.torch_checkpoint import CheckpointFormatError

_LEAF = {
    "kernel": ("params", "kernel"),
    "depthwise_kernel": ("params", "kernel"),
    "bias": ("params", "bias"),
    "beta": ("params", "bias"),
    "gamma": ("params", "scale"),
    "moving_mean": ("batch_stats", "mean"),
    "moving_variance": ("batch_stats", "var"),
}


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras2_weights(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer name: {weight name without ':0': array}}`` in file order, layers without weights omitted."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointFormatError(f"{path}: not an HDF5 file ({e})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise CheckpointFormatError(f"{path}: no 'layer_names' attribute: not a Keras-2 weights file")
        layers: dict[str, dict[str, np.ndarray]] = {}
        for layer in map(_text, root.attrs["layer_names"]):
            group = root[layer]
            weights = {}
            for full in map(_text, group.attrs.get("weight_names", [])):
                short = full.rsplit("/", 1)[-1].split(":")[0]
                weights[short] = np.asarray(group[full][()])
            if weights:
                layers[layer] = weights
        return layers


def keras_to_flax(
    layers: Mapping[str, Mapping[str, np.ndarray]],
    expected: Mapping[str, tuple[int, ...]],
    prefix_of: Callable[[str], str],
    what: str,
) -> dict[str, np.ndarray]:
    """Flat Flax arrays (float32) from Keras layers, checked strictly against ``expected``.

    ``prefix_of(layer)`` gives the Flax path of a Keras layer (for instance ``backbone/conv1`` for
    ``conv1``). Mismatches are reported in Keras names (``layer/weight``).
    """
    out: dict[str, np.ndarray] = {}
    keras_name: dict[str, str] = {}
    unexpected = []
    for layer, weights in layers.items():
        prefix = prefix_of(layer)
        for w, value in weights.items():
            if w not in _LEAF:
                unexpected.append(f"{layer}/{w}")
                continue
            collection, leaf = _LEAF[w]
            key = f"{collection}/{prefix}/{leaf}"
            if key not in expected or key in out:
                unexpected.append(f"{layer}/{w}")
                continue
            array = np.asarray(value, np.float32)
            if w == "depthwise_kernel":
                array = np.transpose(array, (0, 1, 3, 2))
            out[key], keras_name[key] = array, f"{layer}/{w}"
    missing = [_keras_guess(k) for k in expected if k not in out]
    wrong = [(keras_name[k], out[k].shape, tuple(expected[k])) for k in out if out[k].shape != tuple(expected[k])]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(what, missing, unexpected, wrong)
    return out


def _keras_guess(flax_key: str) -> str:
    """A Flax key in Keras words, for error messages: ``batch_stats/backbone/conv1_bn/mean`` -> ``conv1_bn/moving_mean``."""
    collection, *path, leaf = flax_key.split("/")
    layer = path[-1]
    name = {"kernel": "depthwise_kernel" if "_dw_" in layer else "kernel", "scale": "gamma", "mean": "moving_mean", "var": "moving_variance"}.get(leaf, leaf)
    if leaf == "bias" and layer.endswith("_bn"):
        name = "beta"
    return f"{layer}/{name}"
