"""Shards of an array job, and the manifest that makes outputs exactly-once and resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ppjax.protect import Manifest, Protector, protect_files, resolve_shard, select_shard, shard_of
from ppjax.protect.manifest import MANIFEST_PREFIX, clean_leftovers, staging_path


def _jobs(root: Path, n: int) -> list:
    return [(root / "in" / f"sub{k % 3}" / f"{k}.png", root / "out" / f"sub{k % 3}" / f"{k}.png") for k in range(n)]


def test_shards_are_disjoint_and_cover_every_input(tmp_path):
    jobs = _jobs(tmp_path, 200)
    parts = [select_shard(jobs, tmp_path / "out", 3, i) for i in range(3)]
    seen = [job for part in parts for job in part]
    assert sorted(seen) == sorted(jobs) and len(seen) == len(set(seen))  # each input exactly once
    assert all(len(part) > 40 for part in parts)  # a hash, not everything in one shard
    # The split depends on the relative path alone: listed in another order, or the output folder
    # reached by another absolute path, the same shard gets the same files.
    again = select_shard(list(reversed(jobs)), tmp_path / "out", 3, 1)
    assert sorted(again) == sorted(parts[1])
    assert shard_of("sub1/7.png", 3) == shard_of(str(Path("sub1") / "7.png"), 3)
    assert select_shard(jobs, tmp_path / "out", 1, 0) == jobs


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ((None, None), {}, (1, 0)),
        ((4, 2), {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "9"}, (4, 2)),  # flags win
        ((None, None), {"PPJAX_NUM_SHARDS": "5", "PPJAX_SHARD_INDEX": "4"}, (5, 4)),
        ((None, None), {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}, (8, 6)),  # --array=1-8
        ((None, None), {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "2"}, (3, 2)),  # --array=0-4:2
        ((6, None), {"JOB_COMPLETION_INDEX": "5"}, (6, 5)),  # Kubernetes: the count on the command line
        ((None, None), {"JOB_COMPLETION_INDEX": "1", "PPJAX_NUM_SHARDS": "2"}, (2, 1)),
    ],
)
def test_shard_from_flags_or_the_schedulers_environment(flags, env, expected):
    assert resolve_shard(*flags, environ=env)[:2] == expected


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ((None, None), {"JOB_COMPLETION_INDEX": "1"}, "num-shards"),
        ((3, None), {}, "shard-index"),
        ((3, 3), {}, "not in 0..2"),
        ((None, None), {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "not a whole number"),
    ],
)
def test_incomplete_or_impossible_shards_are_refused(flags, env, message):
    with pytest.raises(ValueError, match=message):
        resolve_shard(*flags, environ=env)


def _inputs(tmp_path, photos) -> list:
    (tmp_path / "in").mkdir(exist_ok=True)
    jobs = []
    for k, rgb in enumerate(photos[:4]):
        Image.fromarray(rgb).save(tmp_path / "in" / f"{k}.png")
        jobs.append((tmp_path / "in" / f"{k}.png", tmp_path / "out" / f"{k}.png"))
    return jobs


@pytest.mark.slow
def test_manifest_keeps_only_outputs_made_with_these_settings(tiny, photos, tmp_path):
    jobs = _inputs(tmp_path, photos)
    protector = Protector([tiny], eps=4.0, steps=3)
    settings = {"eps": 4.0, "steps": 3}
    first = protect_files(protector, jobs, max_batch=2, manifest=Manifest(tmp_path / "out", settings))
    assert all(r.error is None and r.output.exists() for r in first)
    records = [json.loads(line) for line in (tmp_path / "out" / f"{MANIFEST_PREFIX}.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["run"] + ["output"] * 4
    assert sorted(r["output"] for r in records[1:]) == ["0.png", "1.png", "2.png", "3.png"]
    before = {out: (out.read_bytes(), out.stat().st_mtime_ns) for _, out in jobs}

    # The same settings: every output is done, nothing is written again.
    again = protect_files(protector, jobs, max_batch=2, manifest=Manifest(tmp_path / "out", settings))
    assert all(r.skipped and r.skipped.startswith("done") for r in again)
    assert {out: (out.read_bytes(), out.stat().st_mtime_ns) for _, out in jobs} == before

    # Other settings: reported, not silently kept as if they were this run's, and not replaced.
    other = protect_files(protector, jobs, max_batch=2, manifest=Manifest(tmp_path / "out", {"eps": 2.0, "steps": 3}))
    assert all("other settings" in r.skipped for r in other)
    assert {out: out.read_bytes() for _, out in jobs} == {out: b for out, (b, _) in before.items()}

    # An output edited since, or an input that changed: reported too.
    Image.fromarray(photos[5]).save(jobs[0][1])
    Image.fromarray(photos[4]).save(jobs[1][0])
    checked = protect_files(protector, jobs, max_batch=2, manifest=Manifest(tmp_path / "out", settings))
    assert "output changed" in checked[0].skipped and "input changed" in checked[1].skipped
    assert checked[2].skipped.startswith("done")

    # --overwrite redoes them with the new settings, and the manifest says so.
    redone = protect_files(protector, jobs, max_batch=2, overwrite=True, manifest=Manifest(tmp_path / "out", {"eps": 2.0, "steps": 3}))
    assert all(r.error is None and r.skipped is None for r in redone)
    final = protect_files(protector, jobs, max_batch=2, manifest=Manifest(tmp_path / "out", {"eps": 2.0, "steps": 3}))
    assert all(r.skipped.startswith("done") for r in final)


@pytest.mark.slow
def test_outputs_without_a_manifest_are_not_replaced_silently(tiny, photos, tmp_path):
    jobs = _inputs(tmp_path, photos)
    (tmp_path / "out").mkdir()
    Image.fromarray(photos[0]).save(jobs[0][1])  # someone's file, from before any manifest
    results = protect_files(Protector([tiny], eps=4.0, steps=2), jobs, max_batch=4, manifest=Manifest(tmp_path / "out", {}))
    assert "no ppjax manifest" in results[0].skipped
    assert all(r.skipped is None and r.output.exists() for r in results[1:])


def test_a_killed_runs_leftovers_are_removed_and_its_unrecorded_output_redone(tiny, photos, tmp_path):
    jobs = _inputs(tmp_path, photos)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    Manifest(out_dir, {"eps": 4.0}).start()  # the killed run had begun its manifest
    staged = staging_path(jobs[0][1])
    staged.write_bytes(b"half a png")
    part = out_dir / f".{staged.name}.abc123.part"
    part.write_bytes(b"half")
    other_shard = out_dir / ".elsewhere.png.ppjax-staged.png"  # not this run's output: kept
    other_shard.write_bytes(b"in progress")
    Image.fromarray(photos[3]).save(jobs[1][1])  # renamed into place, then killed before its record
    results = protect_files(Protector([tiny], eps=4.0, steps=2), jobs, max_batch=4, manifest=Manifest(out_dir, {"eps": 4.0}))
    assert all(r.error is None and r.skipped is None for r in results)
    assert not staged.exists() and not part.exists() and other_shard.exists()
    assert sorted(p.name for p in out_dir.iterdir() if p.name.startswith(".") and MANIFEST_PREFIX not in p.name) == [other_shard.name]
    assert clean_leftovers([jobs[0][1]]) == 0
