"""`ppjax bench` runs and reports consistent figures (no timing thresholds: those belong to the benchmark)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ppjax.cli import app

pytest.importorskip("torch")


@pytest.mark.slow
def test_bench_command_reports_both_frameworks(tmp_path):
    """In bfloat16 (the attack bench below runs float32), which the report says."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--batch-sizes", "2", "--repeats", "1", "--size", "32", "--dtype", "bfloat16", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(r["batch"], r["task"]) for r in report["rows"]] == [(2, "forward"), (2, "forward+input grad")]
    for r in report["rows"]:
        assert r["jax_ips"] > 0 and r["torch_ips"] > 0
        assert r["ratio"] == pytest.approx(r["jax_ips"] / r["torch_ips"])  # one round: the same ratio
        assert len(r["seconds"]["jax"]) == len(r["seconds"]["torch"]) == 1
    assert "jax / pytorch" in result.stdout and "torch" in report["environment"]
    assert report["dtype"] == "bfloat16" and report["environment"].startswith("bfloat16;") and "bfloat16" in result.stdout


@pytest.mark.slow
def test_bench_attack_reports_each_model(tmp_path):
    out = tmp_path / "attack.json"
    # One model keeps the test short; `--model` picks it.
    args = ["bench", "attack", "--model", "places365", "--batch", "1", "--steps", "2", "--repeats", "1", "--size", "64", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(r["model"].split(" ")[0], r["task"]) for r in report["rows"]] == [("places365", "attack"), ("places365", "protect end to end")]
    assert report["dtype"] == "float32"
    for r in report["rows"]:
        assert r["jax"] > 0 and r["torch"] > 0 and r["ratio"] == pytest.approx(r["jax"] / r["torch"])
        assert r["torch_channels_last"] > 0 and r["ratio_channels_last"] == pytest.approx(r["jax"] / r["torch_channels_last"])
        assert sorted(r["seconds"]) == ["jax", "torch", "torch_channels_last"]


def test_speed_ratio_pairs_the_calls_of_each_round():
    from ppjax.bench.frameworks import _speed_ratio

    # The machine slowed down in the last round: each round's ratio says 2, 1, 3 (median 2),
    # whereas the medians of the times (2 and 2) would say 1.
    times = {"jax": [1.0, 2.0, 4.0], "torch": [2.0, 2.0, 12.0]}
    assert _speed_ratio(times, "jax", "torch") == 2.0
    assert _speed_ratio(times, "torch", "jax") == 0.5


@pytest.mark.parametrize("command", [["bench"], ["bench", "attack"]])
def test_bench_rejects_unknown_dtype(command):
    result = CliRunner().invoke(app, [*command, "--dtype", "float16"])
    assert result.exit_code == 2
    text = " ".join(line.strip("│ ") for line in result.output.splitlines())  # the error box wraps lines
    assert "Invalid value for '--dtype'" in text and "'float16' is not one of 'float32', 'bfloat16'" in text


def test_bench_attack_rejects_unknown_model():
    result = CliRunner().invoke(app, ["bench", "attack", "--model", "places365,resnet18"])
    assert result.exit_code == 2
    assert "--model must list some of places365, efficientnet-lite0" in result.output


@pytest.mark.parametrize("args, message", [(["--qualities", "0"], "--qualities"), (["--qualities", "a,b"], "--qualities"), (["--method", "coupled"], "--method")])
def test_bench_jpeg_refuses_bad_options(tmp_path, args, message):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    result = CliRunner().invoke(app, ["bench", "jpeg", str(photo), *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.slow
def test_bench_scale_reports_each_device_count(tmp_path, lite0_store, photos, monkeypatch):
    """Each device count in its own child (4 CPU devices there); the figures' shape, not speeds."""
    import json

    from PIL import Image

    root, _ = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    for k in range(4):
        Image.fromarray(photos[k]).save(tmp_path / f"{k}.png")
    report = tmp_path / "scale.json"
    args = ["bench", "scale", str(tmp_path), "--devices", "1,2", "--ray-workers", "0", "--size", "32", "--steps", "2", "--batch-size", "2", "--json", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert [r["setting"] for r in figures["rows"]] == ["1 device", "2 devices"]
    assert all(r["images"] == 4 and r["images_per_s"] > 0 for r in figures["rows"]) and figures["rows"][0]["speedup"] == 1.0
    assert "images/s" in result.stdout


def test_bench_scale_refuses_bad_device_counts(tmp_path):
    result = CliRunner().invoke(app, ["bench", "scale", str(tmp_path), "--devices", "1,x"])
    assert result.exit_code == 2 and "comma-separated" in result.output


@pytest.mark.slow
def test_bench_ensemble_prints_members_sum_and_ensemble(tmp_path):
    """The cost figure of an ensemble: each member's step, their sum, the ensemble's, the ratio."""
    report = tmp_path / "ens.json"
    args = ["bench", "ensemble", "--model", "places365-resnet18,places365", "--random-weights", "--size", "48", "--batch", "1", "--repeats", "2", "--json", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert [r["model"] for r in figures["rows"]] == ["places365-resnet18", "places365"]
    assert figures["members_seconds"] == pytest.approx(sum(r["seconds"] for r in figures["rows"]))
    assert figures["ratio"] == pytest.approx(figures["ensemble_seconds"] / figures["members_seconds"])
    assert figures["random_weights"] and "random weights" in result.stdout and "sum of the members" in result.stdout
    one = CliRunner().invoke(app, ["bench", "ensemble", "--model", "efficientnet-lite0"])
    assert one.exit_code == 2 and "at least two" in one.output


def test_bench_robustness_refuses_fusing_models_with_different_classes_at_start(tmp_path, monkeypatch):
    """As protect does: logits and probs fusions need one set of classes; the run stops before any
    photo is protected, with a usage error."""
    from types import SimpleNamespace

    import ppjax.cli.bench_photos as bench_cli

    loaded = []
    classes = {"places365": 365, "efficientnet-lite0": 1000}
    monkeypatch.setattr(bench_cli, "load_or_fetch", lambda name: loaded.append(name) or SimpleNamespace(spec=SimpleNamespace(num_classes=classes[name])))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["bench", "robustness", str(tmp_path), "--model", "places365,efficientnet-lite0", "--ensemble", "probs"])
    assert result.exit_code == 2 and "same classes" in result.output, result.output
    assert loaded == ["places365", "efficientnet-lite0"]
