"""`ppjax protect` end to end on real photos against a real trained model."""

from __future__ import annotations

import pytest

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from typer.testing import CliRunner

import ppjax.store as model_store
from ppjax.cli import app

from ..attack_models import imagenet_photos


@pytest.mark.slow
def test_pgd_protects_real_photos_as_written(tmp_path, lite0_store):
    """EfficientNet-Lite0 (real ImageNet weights) on real photos it classifies correctly: PGD at
    eps 4/255 and 20 steps protects every written PNG, judged by reloading the files with both the
    JAX port and ONNX Runtime on the graph from the original PyTorch model."""
    root, model = lite0_store
    (tmp_path / "in").mkdir()
    names, labels = [], []
    photos = imagenet_photos(20)  # a CI-sized share of the 300
    top1 = jax.jit(lambda x: jnp.argmax(model.apply(model.variables, x), -1))  # one (20, ...) shape: one compile
    seen = np.asarray(top1(jnp.asarray(np.stack([rgb for _, rgb, _ in photos]), jnp.float32) / 255))
    for (image_id, rgb, label), guess in zip(photos, seen):
        if guess == label:
            Image.fromarray(rgb).save(tmp_path / "in" / f"{image_id}.png")
            names.append(image_id), labels.append(label)
    assert len(names) >= 15
    import os

    os.environ["PPJAX_HOME"] = str(root)
    try:
        result = CliRunner().invoke(
            app, ["protect", "--model", "efficientnet-lite0", "--method", "pgd", "--eps", "4", "--steps", "20", "-o", str(tmp_path / "out"), str(tmp_path / "in")]
        )
    finally:
        del os.environ["PPJAX_HOME"]
    assert result.exit_code == 0, result.output
    assert f"protected {len(names)}/{len(names)} images as written" in result.stdout
    written = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{n}.png")) for n in names])
    originals = np.stack([np.asarray(Image.open(tmp_path / "in" / f"{n}.png")) for n in names])
    assert np.abs(written.astype(int) - originals).max() <= 4
    x = written.astype(np.float32) / 255
    padded = np.concatenate([x, np.zeros((len(photos) - len(x), *x.shape[1:]), np.float32)])
    jax_top1 = np.asarray(top1(jnp.asarray(padded)))[: len(x)]
    assert (jax_top1 != np.array(labels)).all()
    from ppjax.evaluate.engines import OnnxClassifier

    onnx_top1 = OnnxClassifier(model_store.model_dir("efficientnet-lite0", root) / model_store.ONNX).logits(x).argmax(1)
    assert (onnx_top1 != np.array(labels)).all()
