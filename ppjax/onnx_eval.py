"""ONNX Runtime as an independent engine: the same pixels, a graph from the original framework.

Uses the CUDA execution provider when onnxruntime-gpu sees a GPU, the CPU provider otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["providers", "OnnxClassifier"]


def providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


class OnnxClassifier:
    """``logits(x01)``: (N, H, W, 3) float pixels in [0, 1] -> (N, C) logits, via ONNX Runtime."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), providers=providers())
        self.input = self.session.get_inputs()[0].name

    def logits(self, x01: np.ndarray) -> np.ndarray:
        nchw = np.ascontiguousarray(np.asarray(x01, np.float32).transpose(0, 3, 1, 2))
        return self.session.run(None, {self.input: nchw})[0]
