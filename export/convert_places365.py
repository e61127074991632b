"""Convert the official Places365-Standard checkpoints (CSAIL) to ppjax's Flax safetensors layout.

The official ``resnet50_places365.pth.tar``, ``resnet18_places365.pth.tar``,
``wideresnet18_places365.pth.tar`` and ``densenet161_places365.pth.tar`` are legacy-format
``torch.save`` files (Python 2.7, PyTorch 0.2) of ``{'epoch', 'arch', 'state_dict', 'best_prec1'}``
whose state_dict keys carry DataParallel's ``module.`` prefix. DenseNet161's keys also keep the
names of PyTorch 0.2's dense layers, ``norm.1``/``conv.1``/``norm.2``/``conv.2``, which later
torchvision spells ``norm1``/``conv1``/...; both spellings are accepted. This script reads the file
with ppjax's weights-only reader (no torch, no pickled code run), normalises the names, maps every
tensor onto the Flax module and checks every name and shape. ``ppjax models fetch/import`` run the
same :func:`convert`.

Usage: ``python -m ppjax.export.convert_places365 [--model NAME] CHECKPOINT OUT.safetensors``
"""

from __future__ import annotations

import argparse
import functools
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ppjax.store.variables import save_variables
from ppjax.export.torch_to_flax import torch_to_flax
from ppjax.models import places365
from ppjax.store.torch_checkpoint import CheckpointFormatError, load_torch_checkpoint

# denselayer3.norm.1.weight -> denselayer3.norm1.weight (PyTorch 0.2's DenseNet layer names).
_LEGACY_DENSE = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def official_names(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A state_dict with today's torchvision names: ``module.`` stripped, DenseNet's legacy layer names joined."""
    return {_LEGACY_DENSE.sub(r"\1\2.", k.removeprefix("module.")): v for k, v in state_dict.items()}


def state_dict_from_checkpoint(obj, source: str, name: str = "places365") -> Mapping[str, np.ndarray]:
    """The state_dict of an official checkpoint (or of a bare state_dict), with today's names."""
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, np.ndarray) for v in sd.values()):
        raise CheckpointFormatError(f"{source}: no state_dict of tensors found")
    arch = obj.get("arch") if isinstance(obj, dict) else None
    expected = places365.ARCHS[name]
    if arch not in (None, expected):
        raise CheckpointFormatError(f"{source}: checkpoint is for architecture {arch!r}, not {expected} ({name})")
    return official_names(sd)


def convert(checkpoint: str | Path, name: str = "places365") -> dict[str, np.ndarray]:
    """Flat Flax arrays for the Places365 model ``name`` from its official checkpoint file."""
    sd = state_dict_from_checkpoint(load_torch_checkpoint(checkpoint), str(checkpoint), name)
    return torch_to_flax(sd, places365.expected_shapes(name), str(checkpoint))


def from_files(files: Mapping[str, Path], name: str = "places365") -> tuple[dict[str, np.ndarray], str]:
    """The store's converter: flat Flax arrays and labels text from ``{"checkpoint", "categories"}``."""
    names = places365.parse_categories(files["categories"].read_text(encoding="utf-8-sig"))
    return convert(files["checkpoint"], name), "".join(f"{n} {i}\n" for i, n in enumerate(names))


# The store names its functions by "module:function": one converter per family member.
from_files_resnet18 = functools.partial(from_files, name="places365-resnet18")
from_files_wideresnet18 = functools.partial(from_files, name="places365-wideresnet18")
from_files_densenet161 = functools.partial(from_files, name="places365-densenet161")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(places365.ARCHS), default="places365")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    save_variables(args.out, convert(args.checkpoint, args.model), {"source": args.checkpoint.name})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
