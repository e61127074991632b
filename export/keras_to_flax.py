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


def read_keras2_weights(path: str | Path, *, timeout: float = 120.0, memory_bytes: int = 4 << 30) -> dict[str, dict[str, np.ndarray]]:
    """``{layer name: {weight name without ':0': array}}`` in file order, layers without weights omitted.

    The file is parsed in a child process limited to ``memory_bytes`` of address space and
    ``timeout`` seconds: HDF5 is a C library, and fuzzing found damaged files on which it loops
    forever or asks for terabytes. Whatever the child does, the caller gets the arrays or one
    :class:`CheckpointFormatError` naming the file.
    """
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ppjax-hdf5-") as tmp:
        out = Path(tmp) / "weights.npz"
        cmd = [sys.executable, "-m", "ppjax.export.keras_to_flax", str(path), str(out), "--memory-bytes", str(memory_bytes)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CheckpointFormatError(f"{path}: the HDF5 reader did not finish within {timeout:g} s (a damaged file?)") from None
        if proc.returncode != 0:
            said = [line[len("error: "):] for line in proc.stderr.splitlines() if line.startswith("error: ")]
            reason = said[-1] if said else f"the HDF5 reader failed (exit status {proc.returncode}; a damaged file?)"
            raise CheckpointFormatError(reason if reason.startswith(str(path)) else f"{path}: {reason}")
        try:
            with np.load(out, allow_pickle=False) as arrays:
                index = json.loads(str(arrays["index"]))
                return {str(layer): {str(w): arrays[key] for w, key in weights} for layer, weights in index}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointFormatError(f"{path}: the HDF5 reader's output is unreadable ({e})") from None


def _read_in_process(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointFormatError(f"{path}: not an HDF5 file ({e})") from None
    try:
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
                    value = np.asarray(group[full][()])
                    if value.dtype.kind not in "biuf":
                        raise CheckpointFormatError(f"{path}: weight {layer}/{short} holds {value.dtype} values, not numbers")
                    weights[short] = value
                if weights:
                    layers[layer] = weights
            return layers
    except CheckpointFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged HDF5 file raises anything from h5py; one clear line
        raise CheckpointFormatError(f"{path}: damaged Keras-2 weights file ({type(e).__name__}: {e})") from None


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


def main(argv=None) -> int:
    """The child of :func:`read_keras2_weights`: parse SRC under resource limits, write OUT.npz."""
    import argparse
    import json
    import resource
    import sys

    parser = argparse.ArgumentParser(description="Read a Keras-2 weights file into an .npz (used in a child process).")
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--memory-bytes", type=int, default=4 << 30)
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (args.memory_bytes, args.memory_bytes))
    try:
        layers = _read_in_process(args.src)
    except CheckpointFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {args.src}: the HDF5 reader ran out of its {args.memory_bytes >> 20} MB (a damaged file?)", file=sys.stderr)
        return 2
    arrays, index = {}, []
    for i, (layer, weights) in enumerate(layers.items()):
        index.append([layer, [[w, f"a{i}_{j}"] for j, w in enumerate(weights)]])
        arrays.update({f"a{i}_{j}": v for j, v in enumerate(weights.values())})
    np.savez(args.out, index=np.array(json.dumps(index)), **arrays)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
