"""ONNX graphs exported from the models' *original* PyTorch definitions, never from the JAX port.

ONNX Runtime is ppjax's independent judge: if the graph came from the Flax port, a bug in the port
would be judged by itself. So each graph is traced from the PyTorch module (torchvision's ResNet50
layout for Places365, ``efficientnet_lite_pytorch`` for EfficientNet-Lite0) filled with
``load_state_dict(strict=True)`` from the original weights file.

The graph takes ``pixels``: (N, 3, H, W) float32 RGB in [0, 1]; the model's own normalisation is
the first node, so both engines are fed the same pixels. N, H and W are dynamic, except for a
network that takes one size only (``ModelSpec.fixed_size``: the Places365 WideResNet18), whose
graph has that static H and W; :class:`ppjax.evaluate.engines.OnnxClassifier` resizes to it as the
port does. Output: ``logits`` (N, C). Needs torch (the ``export`` extra).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ppjax.models import ModelSpec
from ppjax.store.torch_checkpoint import load_torch_checkpoint

OPSET = 18


class _Normalised(nn.Module):
    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels):
        return self.model((pixels - self.mean) / self.std)


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    from ppjax.export.convert_places365 import official_names

    obj = load_torch_checkpoint(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    return {k: torch.from_numpy(np.array(v)) for k, v in official_names(sd).items()}


def original_module(name: str, checkpoint: Path) -> tuple[nn.Module, ModelSpec]:
    """The original PyTorch model ``name`` with the weights of ``checkpoint``, loaded strictly, eval mode."""
    from ppjax.store.registry import entry

    e = entry(name)
    if e.original is None:
        raise ValueError(f"no ONNX export for {name!r}: it has no original PyTorch definition")
    model = e.piece("original")()
    model.load_state_dict(_state_dict(checkpoint), strict=True)
    return model.eval(), e.piece("spec")


def export_onnx(name: str, checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the ONNX graph of model ``name`` (see module docstring) to ``out``."""
    model, spec = original_module(name, Path(checkpoint))
    wrapped = _Normalised(model, spec).eval()
    example = torch.rand(1, 3, spec.native_size, spec.native_size)
    spatial = {} if spec.fixed_size else {2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            wrapped,
            (example,),
            str(out),
            dynamo=False,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch", **spatial}, "logits": {0: "batch"}},
            opset_version=OPSET,
        )
    return Path(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Export a model's original PyTorch definition to ONNX.")
    from ppjax.store.registry import onnx_model_names

    parser.add_argument("model", choices=onnx_model_names())
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(f"wrote {export_onnx(args.model, args.checkpoint, args.out)}")


if __name__ == "__main__":
    main()
