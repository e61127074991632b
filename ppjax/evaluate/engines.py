"""The engines that judge a run: the JAX port, and an independent engine: ONNX Runtime on a graph
exported from the original framework (never from the port), or, for a model that came as a
TensorFlow Lite file (MobileNetV2), that very file run by LiteRT.

ONNX Runtime uses the CUDA execution provider when onnxruntime-gpu sees a GPU, the CPU otherwise.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Engines", "EngineError", "providers", "OnnxClassifier", "TfliteClassifier", "make_engines", "attacked_models", "recorded_edits", "held_out_judges"]


class Engines(str, enum.Enum):
    JAX = "jax"
    ONNX = "onnx"
    BOTH = "both"


class EngineError(Exception):
    """An engine cannot be built; the message says what to install or run."""


def providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


class OnnxClassifier:
    """``logits(x01)``: (N, H, W, 3) float pixels in [0, 1] -> (N, C) logits, via ONNX Runtime."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures reach the caller as exceptions; no log lines of its own
        self.session = ort.InferenceSession(str(self.path), options, providers=providers())
        pixels = self.session.get_inputs()[0]
        self.input = pixels.name
        h, w = pixels.shape[2:4]
        #: (height, width) of a graph that takes one size only, else None.
        self.fixed = (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def logits(self, x01: np.ndarray) -> np.ndarray:
        x = np.asarray(x01, np.float32)
        if self.fixed is not None and x.shape[1:3] != self.fixed:
            x = _pil_resize(x, self.fixed)
        nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return self.session.run(None, {self.input: nchw})[0]


class TfliteClassifier:
    """``logits(x01)``: (N, H, W, 3) float pixels in [0, 1] -> (N, 1000) log-probabilities, by a
    TensorFlow Lite ImageNet classifier with 1001 outputs ("background" first, dropped) run by
    LiteRT, as its own runtime runs it: the photo resized to the model's input by Pillow's bilinear
    filter, as 8-bit pixels, one at a time."""

    def __init__(self, path: str | Path):
        from ppjax.export.convert_mobilenet_v2 import interpreter

        self.path = Path(path)
        self.interpreter = interpreter(self.path)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.fixed = tuple(int(v) for v in self.input["shape"][1:3])

    def logits(self, x01: np.ndarray) -> np.ndarray:
        x = np.asarray(x01, np.float32)
        if x.shape[1:3] != self.fixed:
            x = _pil_resize(x, self.fixed)
        u8 = np.clip(np.floor(x * 255.0 + 0.5), 0, 255).astype(np.uint8)
        scale, zero = self.output["quantization"]
        rows = []
        for image in u8:
            self.interpreter.set_tensor(self.input["index"], image[None])
            self.interpreter.invoke()
            probs = (self.interpreter.get_tensor(self.output["index"])[0].astype(np.float32) - zero) * scale
            rows.append(np.log(np.maximum(probs[1:], 1e-6)))
        return np.stack(rows)


def _pil_resize(x01: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) [0, 1] pixels resized to ``size`` = (height, width) by Pillow's bilinear filter on
    8-bit pixels: what the original demo of a fixed-size network does to a photo (and the JAX port,
    :func:`ppjax.ops.resample.resize`, reproduces)."""
    from PIL import Image

    u8 = np.clip(np.floor(x01 * 255.0 + 0.5), 0, 255).astype(np.uint8)
    out = [np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.BILINEAR)) for im in u8]
    return np.stack(out).astype(np.float32) / np.float32(255.0)


def make_engines(model, name: str, which: Engines, model_dir: Path, programs: Path | None = None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """``{engine name: logits(x01)}`` for the loaded ``model`` (store name ``name``, installed in
    ``model_dir``): ``jax`` runs the port, jitted, on a few shared canvases (one program serves many
    photo sizes, :mod:`ppjax.models.any_size`; ``programs``: the folder that keeps them for later
    runs); ``onnx`` the graph exported at install."""
    engines = {}
    if which in (Engines.JAX, Engines.BOTH):
        from ppjax.models.any_size import any_size

        engines["jax"] = any_size(model, then_name="logits", programs=programs)
    if which in (Engines.ONNX, Engines.BOTH):
        engines["onnx"] = independent_engine(name, model_dir)
    return engines


def independent_engine(name: str, model_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """``logits(x01)`` of the installed model ``name`` by an engine independent of the port: its
    ONNX graph in ONNX Runtime, or its TensorFlow Lite file in LiteRT; EngineError saying what to
    install when it has neither."""
    from ppjax import store

    runtime = store.entry(name).runtime_file
    if runtime and (Path(model_dir) / runtime).is_file():
        try:
            return TfliteClassifier(Path(model_dir) / runtime).logits
        except store.ModelStoreError as e:
            raise EngineError(f"{name}'s own runtime cannot run: {e}") from None
    path = Path(model_dir) / store.ONNX
    if not path.is_file():
        raise EngineError(
            f"{name} has no ONNX graph: install the export extra (pip install 'ppjax[export]') and run "
            f"`ppjax models import {name} ...` again, or use --engine jax"
        )
    return OnnxClassifier(path).logits


def attacked_models(folder: Path) -> set[str]:
    """The models a ppjax run attacked to make the files in ``folder``, from its manifests'
    ``run`` records (empty when the folder has none)."""
    from ppjax.protect.manifest import read_records

    names: set[str] = set()
    for rec in read_records(folder):
        if rec.get("kind") == "run":
            names.update(rec.get("settings", {}).get("models", ()))
    return names


def recorded_edits(folder: Path) -> dict[str, str]:
    """``{output path relative to folder: the edit in words}`` for the files whose newest record
    says an edit method made them (``ppjax protect --method edit`` and kin)."""
    from ppjax.protect.manifest import newest_outputs

    return {name: str(rec["edit"]) for name, rec in newest_outputs(folder).items() if rec.get("edit")}


def held_out_judges(names, attacked, load) -> dict[str, tuple]:
    """``{name: (model, logits(x01))}``: each named model's independent engine (its ONNX graph
    exported from the original framework, or its own TFLite file), as a judge of a run it took no
    part in. ``load(name)`` returns the installed model. EngineError for a judge that was
    attacked, or has no such engine."""
    from ppjax import store

    judges = {}
    for name in names:
        if name in attacked:
            raise EngineError(f"{name} was attacked, so it cannot judge the run: a judge must be held out (choose another model)")
        model = load(name)
        judges[name] = (model, independent_engine(name, store.model_dir(name)))
    return judges
