"""The edit methods end to end: `ppjax protect --method edit+pgd` on real photos against the real
EfficientNet-Lite0, verified through Pillow's channel by ONNX Runtime; the full-size photo gets the
edit itself, not an upsampled residual."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ppjax.cli import app

from ..attack_models import imagenet_photos


@pytest.mark.slow
@pytest.mark.core
def test_full_size_photo_gets_the_edit_and_the_carried_noise(tiny):
    """Batch._full for a hybrid: the edit applied to the 600x400 original itself, plus the working
    copy's noise (protected minus edited, within eps) upsampled: never more than eps away from
    the edited original."""
    from ppjax.edits import apply_full
    from ppjax.protect import Protector
    from ppjax.protect.batch import Batch
    from ppjax.protect.edit_run import EditResult

    p = Protector([tiny], method="edit+pgd", channel="social", eps=2.0)
    pipe = p.pipeline
    rng = np.random.default_rng(0)
    full = np.asarray(Image.fromarray(rng.integers(0, 256, (40, 60, 3), np.uint8)).resize((600, 400), Image.Resampling.BICUBIC))
    work = np.asarray(Image.fromarray(full).resize((300, 200), Image.Resampling.BICUBIC))
    params = pipe.project(jax.tree_util.tree_map(lambda a: a + 0.3, pipe.identity()))
    x = jnp.asarray(work[None] / np.float32(255))
    edited = np.rint(np.asarray(pipe.apply(params, x))[0] * 255)
    canvas = np.zeros((1, 320, 320, 3), np.float32)
    noise = rng.integers(-2, 3, edited.shape)
    canvas[0, :200, :300] = np.clip(edited + noise, 0, 255) / 255
    edited_canvas = np.zeros_like(canvas)
    edited_canvas[0, :200, :300] = edited / 255
    coefficients = np.zeros((320, 320, 2), np.float32)
    coefficients[:200, :300] = np.asarray(pipe.coefficients(x))[0]
    result = EditResult(params, edited_canvas[0], coefficients)
    batch = Batch(p, finish=lambda r: None, is_input=lambda path: False)
    out = batch._full(full, work, canvas[0], result)
    base = apply_full(pipe, params, full, coefficients[:200, :300])
    change = out.astype(int) - base
    assert out.shape == full.shape and np.abs(change).max() <= 2 and np.abs(change).mean() > 0.3
    assert np.abs(base.astype(int) - full).mean() > 5  # the edit itself is there


@pytest.mark.slow
def test_edit_plus_noise_protects_real_photos_through_the_real_channel(tmp_path, lite0_store, monkeypatch):
    from ppjax import store as model_store
    from ppjax.evaluate.engines import OnnxClassifier
    from ppjax.io.real_channel import apply_real
    from ppjax.ops.channel import panel

    root, _ = lite0_store
    (tmp_path / "in").mkdir()
    for image_id, rgb, _ in imagenet_photos(2):  # at 224 pixels: the smallest canvas, the cheapest compile
        Image.fromarray(rgb).resize((224, 224), Image.Resampling.BICUBIC).save(tmp_path / "in" / f"{image_id}.png")
    monkeypatch.setenv("PPJAX_HOME", str(root))
    report = tmp_path / "report.json"
    args = ["protect", "--model", "efficientnet-lite0", "--method", "edit+pgd", "--steps", "10", "--channel-rounds", "1"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out"), "--json", str(report), str(tmp_path / "in")])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    judge = OnnxClassifier(model_store.model_dir("efficientnet-lite0", root) / model_store.ONNX).logits
    fooled_total = variants_total = 0
    for row in data["results"]:
        assert row["edit"] and row["edit"] != "no change"
        original = np.asarray(Image.open(row["source"]).convert("RGB"))
        written = np.asarray(Image.open(row["output"]).convert("RGB"))
        assert np.abs(written.astype(int) - original).mean() > 1.0  # an edit, not only noise
        variants = panel("social", *original.shape[:2])
        fooled = [
            judge(apply_real(written, v)[None] / np.float32(255)).argmax() != judge(apply_real(original, v)[None] / np.float32(255)).argmax()
            for v in variants
        ]  # fmt: skip
        assert row["variants"] == len(variants) and abs(sum(fooled) - row["variants_protected"]) <= 1
        fooled_total, variants_total = fooled_total + sum(fooled), variants_total + len(variants)
    assert fooled_total / variants_total >= 0.8
