"""`ppjax bench` runs and reports consistent figures (no timing thresholds: those belong to the benchmark)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ppjax.cli import app

pytest.importorskip("torch")


def test_bench_command_reports_both_frameworks(tmp_path):
    """In bfloat16 (the attack bench below runs float32), which the report says."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--batch-sizes", "2", "--repeats", "1", "--size", "32", "--dtype", "bfloat16", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(r["batch"], r["task"]) for r in report["rows"]] == [(2, "forward"), (2, "forward+input grad")]
    for r in report["rows"]:
        assert r["jax_ips"] > 0 and r["torch_ips"] > 0
        assert r["ratio"] == pytest.approx(r["jax_ips"] / r["torch_ips"])
    assert "jax / pytorch" in result.stdout and "torch" in report["environment"]
    assert report["dtype"] == "bfloat16" and report["environment"].startswith("bfloat16;") and "bfloat16" in result.stdout


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


@pytest.mark.parametrize("command", [["bench"], ["bench", "attack"]])
def test_bench_rejects_unknown_dtype(command):
    result = CliRunner().invoke(app, [*command, "--dtype", "float16"])
    assert result.exit_code == 2
    assert "--dtype must be one of float32, bfloat16" in result.output


def test_bench_attack_rejects_unknown_model():
    result = CliRunner().invoke(app, ["bench", "attack", "--model", "places365,resnet18"])
    assert result.exit_code == 2
    assert "--model must list some of places365, efficientnet-lite0" in result.output
