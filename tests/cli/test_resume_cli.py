"""`ppjax protect` killed with SIGKILL mid-run, then run again: whole outputs only, none written
twice, the same bytes as a run never interrupted; other settings are never silently kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import ROOT

_PPJAX = [sys.executable, "-c", "from ppjax.cli import main; main()"]


def _records(out: Path) -> list[dict]:
    found = []
    for f in sorted(out.glob(".ppjax-manifest*.jsonl")):
        for line in f.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return [r for r in found if r.get("kind") == "output"]


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".*") if not p.name.startswith(".ppjax-manifest"))


@pytest.mark.slow
def test_a_run_killed_mid_run_resumes_exactly_once(tmp_path, lite0_store, places_batch):
    root, _ = lite0_store
    src = tmp_path / "in"
    src.mkdir()
    for k in range(12):
        crop = places_batch[k % len(places_batch), 64 * (k // 6) : 64 * (k // 6) + 64, 96:160]
        Image.fromarray(np.asarray(np.rint(crop * 255), np.uint8)).save(src / f"{k:02d}.png")
    env = {**os.environ, "PPJAX_HOME": str(root), "PPJAX_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    for name in ("PPJAX_NUM_SHARDS", "PPJAX_SHARD_INDEX", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        env.pop(name, None)

    def protect(out: Path, *extra: str) -> subprocess.CompletedProcess:
        # Batches of one (the CPU default): only then are a photo's bytes promised to depend on nothing
        # else (protect_files); in pairs, a kill after an odd count pairs the rest differently.
        args = ["protect", "--model", "efficientnet-lite0", "--channel", "exact", "--batch-size", "1", "--steps", "10", "--no-early-stop", "-o", str(out), *extra, str(src)]
        return subprocess.run([*_PPJAX, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    # The run never interrupted (it also fills the store's compiled-program cache for the others).
    whole = protect(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "out"
    args = ["protect", "--model", "efficientnet-lite0", "--channel", "exact", "--batch-size", "1", "--steps", "10", "--no-early-stop", "-o", str(out), str(src)]
    run = subprocess.Popen([*_PPJAX, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while len(_records(out)) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL
    first = {r["output"]: r for r in _records(out)}
    assert 3 <= len(first) < 12, "the kill came after the run had finished: nothing was tested"
    kept = {name: (out / name).stat().st_mtime_ns for name in first}

    again = protect(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(first)} already done" in again.stdout
    records = _records(out)
    assert sorted(r["output"] for r in records) == sorted(f"{k:02d}.png" for k in range(12))  # each once
    assert {name: (out / name).stat().st_mtime_ns for name in first} == kept  # not written again
    assert _hidden(out) == []  # no staging or partial file left
    for k in range(12):
        assert (out / f"{k:02d}.png").read_bytes() == (tmp_path / "whole" / f"{k:02d}.png").read_bytes()

    # Another eps: the old outputs are reported, not passed off as this run's, and not replaced ...
    other = protect(out, "--eps", "2")
    assert other.returncode == 0, other.stderr[-3000:]
    assert "other settings" in other.stderr and "12 skipped" in other.stdout
    assert all((out / f"{k:02d}.png").read_bytes() == (tmp_path / "whole" / f"{k:02d}.png").read_bytes() for k in range(12))
    # ... until --overwrite redoes them with it.
    redone = protect(out, "--eps", "2", "--overwrite")
    assert redone.returncode == 0, redone.stderr[-3000:]
    diff = [np.abs(np.asarray(Image.open(out / f"{k:02d}.png"), int) - np.asarray(Image.open(src / f"{k:02d}.png"), int)).max() for k in range(12)]
    assert max(diff) <= 2


def test_cli_refuses_more_devices_than_there_are_and_takes_only_its_shard(tmp_path, photos, monkeypatch):
    from typer.testing import CliRunner

    from ppjax.cli import app
    from ppjax.protect import shard_of

    src = tmp_path / "in"
    src.mkdir()
    for k in range(2):
        Image.fromarray(photos[k]).save(src / f"{k}.png")
    for name in ("PPJAX_NUM_SHARDS", "PPJAX_SHARD_INDEX", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    base = ["protect", "--model", "efficientnet-lite0", "-o", str(tmp_path / "out")]
    many = CliRunner().invoke(app, [*base, "--devices", "64", str(src)])
    assert many.exit_code == 2 and "sees only 1" in many.output
    bad = CliRunner().invoke(app, [*base, "--devices", "two", str(src)])
    assert bad.exit_code == 2 and "--devices" in bad.output
    # A shard that none of the two files hashes to: nothing to do, and no model is needed for it.
    empty = next(i for i in range(50) if i not in {shard_of(f"{k}.png", 50) for k in range(2)})
    idle = CliRunner().invoke(app, [*base, "--num-shards", "50", "--shard-index", str(empty), str(src)])
    assert idle.exit_code == 0 and "nothing to do" in idle.output
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(empty))
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "50")
    from_env = CliRunner().invoke(app, [*base, str(src)])
    assert from_env.exit_code == 0 and "nothing to do" in from_env.output
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "0")
    broken = CliRunner().invoke(app, [*base, str(src)])
    assert broken.exit_code == 2 and "Slurm" in broken.output


@pytest.mark.slow
def test_a_second_ctrl_c_quits_at_once_even_while_the_first_photo_compiles(tmp_path, lite0_store, photos):
    """The first Ctrl+C waits for the photos in flight (a compile's minute on a first run: 83 s here
    when the second press did nothing); a person who presses again gets their terminal back at once,
    with exit 130, and nothing unfinished is recorded or left beside the outputs."""
    root, _ = lite0_store
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):
        Image.fromarray(photos[k]).save(src / f"{k}.png")
    env = {**os.environ, "PPJAX_HOME": str(root), "PPJAX_OFFLINE": "1", "JAX_PLATFORMS": "cpu", "PPJAX_JIT_CACHE": str(tmp_path / "jit")}
    out = tmp_path / "out"
    # A fresh program cache and a step count no other test uses: the first photo compiles for a minute.
    args = ["protect", "--model", "efficientnet-lite0", "--steps", "7", "-o", str(out), str(src)]
    run = subprocess.Popen([*_PPJAX, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob(".ppjax-manifest*")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the run's manifest is started once its Ctrl+C handler is in place
    assert run.poll() is None, run.communicate()[1][-3000:]
    time.sleep(1.0)
    run.send_signal(signal.SIGINT)
    time.sleep(0.5)
    pressed = time.monotonic()
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    waited = time.monotonic() - pressed
    assert run.returncode == 130, stderr[-3000:]
    assert waited < 5.0, f"the second Ctrl+C took {waited:.1f} s to quit"
    assert "quit at once: 0 photo(s) written" in stderr
    assert _records(out) == []  # nothing was finished, and nothing recorded as if it were
    assert not [p for p in out.iterdir() if not p.name.startswith(".ppjax-manifest")]
