"""Convert the official Places365 ResNet50 checkpoint to ppjax's Flax safetensors layout.

The official ``resnet50_places365.pth.tar`` (CSAIL) is a legacy-format ``torch.save`` of
``{'epoch', 'arch', 'state_dict', 'best_prec1'}`` whose state_dict keys carry DataParallel's
``module.`` prefix. This script reads it with ppjax's weights-only reader (no torch, no pickled
code run), strips the prefix, maps every tensor onto the Flax module and checks every name and
shape. ``ppjax models fetch/import places365`` run the same :func:`convert`.

Usage: ``python -m ppjax.export.convert_places365 CHECKPOINT OUT.safetensors``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping

import numpy as np

from ppjax.store.variables import save_variables
from ppjax.export.torch_to_flax import torch_to_flax
from ppjax.models import places365
from ppjax.store.torch_checkpoint import CheckpointFormatError, load_torch_checkpoint


def state_dict_from_checkpoint(obj, source: str) -> Mapping[str, np.ndarray]:
    """The state_dict of an official checkpoint (or of a bare state_dict), ``module.`` stripped."""
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, np.ndarray) for v in sd.values()):
        raise CheckpointFormatError(f"{source}: no state_dict of tensors found")
    arch = obj.get("arch") if isinstance(obj, dict) else None
    if arch not in (None, "resnet50"):
        raise CheckpointFormatError(f"{source}: checkpoint is for architecture {arch!r}, not resnet50")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def convert(checkpoint: str | Path) -> dict[str, np.ndarray]:
    """Flat Flax arrays for :mod:`ppjax.models.places365` from the official checkpoint file."""
    sd = state_dict_from_checkpoint(load_torch_checkpoint(checkpoint), str(checkpoint))
    return torch_to_flax(sd, places365.expected_shapes(), str(checkpoint))


def from_files(files: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], str]:
    """The store's converter: flat Flax arrays and labels text from ``{"checkpoint", "categories"}``."""
    names = places365.parse_categories(files["categories"].read_text(encoding="utf-8-sig"))
    return convert(files["checkpoint"]), "".join(f"{n} {i}\n" for i, n in enumerate(names))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    save_variables(args.out, convert(args.checkpoint), {"source": args.checkpoint.name})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
