"""Convert titu1994's NIMA Keras weights (``weights/mobilenet_weights.h5``) to ppjax's Flax layout.

The file is a Keras-2 ``save_weights`` HDF5 of MobileNet (no top), global average pooling, Dropout
and ``Dense(10, softmax)``. The dense layer's name carries Keras' global layer counter (``dense_1``,
``dense_2``, ... depending on what the saving session had built before), so it is matched by
pattern; every other layer keeps its Keras name. ``ppjax models fetch/import nima`` run
:func:`convert`.

Usage: ``python -m ppjax.export.convert_nima WEIGHTS.h5 OUT.safetensors``
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ppjax.store.variables import save_variables
from ppjax.export.keras_to_flax import keras_to_flax, read_keras2_weights
from ppjax.models import nima
from ppjax.store.torch_checkpoint import CheckpointFormatError

_DENSE = re.compile(r"dense(_\d+)?")


def convert(path: str | Path, backbone: str = "mobilenet") -> dict[str, np.ndarray]:
    """Flat Flax arrays for :class:`ppjax.models.nima.Nima` from a Keras-2 weights file."""
    layers = read_keras2_weights(path)
    dense = [name for name in layers if _DENSE.fullmatch(name)]
    if len(dense) != 1:
        raise CheckpointFormatError(f"{path}: expected exactly one dense layer (the NIMA head), found {dense or 'none'}")
    head = dense[0]
    return keras_to_flax(
        layers,
        nima.expected_shapes(backbone),
        lambda layer: "dense" if layer == head else f"backbone/{layer}",
        str(path),
    )


def from_files(files: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], None]:
    """The store's converter: flat Flax arrays from ``{"checkpoint"}`` (NIMA has no class labels)."""
    return convert(files["checkpoint"]), None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    save_variables(args.out, convert(args.weights), {"source": args.weights.name})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
