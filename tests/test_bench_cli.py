"""`ppjax bench` runs and reports consistent figures (no timing thresholds: those belong to the benchmark)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ppjax.cli import app

pytest.importorskip("torch")


def test_bench_command_reports_both_frameworks(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--batch-sizes", "2", "--repeats", "1", "--size", "64", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(r["batch"], r["task"]) for r in report["rows"]] == [(2, "forward"), (2, "forward+input grad")]
    for r in report["rows"]:
        assert r["jax_ips"] > 0 and r["torch_ips"] > 0
        assert r["ratio"] == pytest.approx(r["jax_ips"] / r["torch_ips"])
    assert "jax / pytorch" in result.stdout and "torch" in report["environment"]


def test_bench_attack_reports_each_model(tmp_path):
    out = tmp_path / "attack.json"
    result = CliRunner().invoke(app, ["bench", "attack", "--batch", "1", "--steps", "2", "--repeats", "1", "--size", "64", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["rows"][0]["model"].startswith("places365")
    assert [r["task"] for r in report["rows"][:2]] == ["attack", "protect end to end"]
    for r in report["rows"]:
        assert r["jax"] > 0 and r["torch"] > 0 and r["ratio"] == pytest.approx(r["jax"] / r["torch"])
        assert r["torch_channels_last"] > 0 and r["ratio_channels_last"] == pytest.approx(r["jax"] / r["torch_channels_last"])


def test_bench_in_bfloat16_says_so(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--batch-sizes", "1", "--repeats", "1", "--size", "32", "--dtype", "bfloat16", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["dtype"] == "bfloat16" and report["environment"].startswith("bfloat16;")
    assert all(r["jax_ips"] > 0 and r["torch_ips"] > 0 for r in report["rows"])
    assert "bfloat16" in result.stdout


@pytest.mark.parametrize("command", [["bench"], ["bench", "attack"]])
def test_bench_rejects_unknown_dtype(command):
    result = CliRunner().invoke(app, [*command, "--dtype", "float16"])
    assert result.exit_code == 2
    assert "--dtype must be one of float32, bfloat16" in result.output
