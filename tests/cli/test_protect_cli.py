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
from ..budget_check import ROUNDING, over_allowance


@pytest.mark.slow
def test_pgd_protects_real_photos_as_written(tmp_path, lite0_store):
    """The exact channel (the MediaEval protocol). EfficientNet-Lite0 (real ImageNet weights) on real photos it classifies correctly: PGD at
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
            app, ["protect", "--model", "efficientnet-lite0", "--channel", "exact", "--method", "pgd", "--eps", "4", "--steps", "20", "-o", str(tmp_path / "out"), str(tmp_path / "in")]
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


@pytest.mark.slow
@pytest.mark.core
def test_default_protect_survives_the_real_channel(tmp_path, lite0_store, monkeypatch):
    """The default (social channel) on real photos: the JSON report says on how many variants each
    file is protected, and an independent judge (ONNX Runtime on the graph from PyTorch) agrees,
    variant by variant, on the decoded files passed through Pillow's real channel."""
    import json

    from ppjax.evaluate.engines import OnnxClassifier
    from ppjax.io.real_channel import apply_real
    from ppjax.ops.channel import panel

    root, model = lite0_store
    (tmp_path / "in").mkdir()
    photos = imagenet_photos(6)
    for image_id, rgb, _ in photos:
        Image.fromarray(rgb).save(tmp_path / "in" / f"{image_id}.png")
    monkeypatch.setenv("PPJAX_HOME", str(root))
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["protect", "--model", "efficientnet-lite0", "-o", str(tmp_path / "out"), "--json", str(report), str(tmp_path / "in")])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["written"] == len(photos) and data["variants"] == 15 * len(photos)
    assert "images on every channel variant" in result.stdout and data["mean_psnr_db"] >= 38.0
    judge = OnnxClassifier(model_store.model_dir("efficientnet-lite0", root) / model_store.ONNX).logits
    agree = total = 0
    for row in data["results"]:
        original = np.asarray(Image.open(row["source"]).convert("RGB"))
        written = np.asarray(Image.open(row["output"]).convert("RGB"))
        # The default's budget on the bytes: each pixel within its CIEDE2000 allowance, in 8/255.
        assert written.shape == original.shape and np.abs(written.astype(int) - original).max() <= 8
        assert over_allowance(original, written, 1.2, 3.0) <= ROUNDING
        variants = panel("social", *original.shape[:2])
        fooled = [
            judge(apply_real(written, v)[None] / np.float32(255)).argmax() != judge(apply_real(original, v)[None] / np.float32(255)).argmax()
            for v in variants
        ]  # fmt: skip
        assert row["variants"] == len(variants)
        unprotected = {v.label() for v, f in zip(variants, fooled) if not f}
        agree += len(variants) - len(unprotected ^ set(row["unprotected_variants"]))
        total += len(variants)
    # The JAX port and ONNX Runtime may differ on an image that sits on a decision boundary.
    assert agree / total >= 0.97
    assert data["variants_protected"] / data["variants"] >= 0.9
