"""`--backend ray`: a local Ray cluster (2 CPUs, two workers) writes the same bytes as the local run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ppjax.protect import ProtectConfig, build_protector, plan_jobs, run
from ppjax.protect.manifest import MANIFEST_PREFIX
from ppjax.protect.ray_backend import run_on_ray

from ..conftest import ROOT


@pytest.mark.slow
def test_ray_workers_write_the_local_runs_bytes(tmp_path, lite0_store, places_batch, monkeypatch):
    ray = pytest.importorskip("ray")
    import ppjax.store as model_store

    root, _ = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    src = tmp_path / "in"
    src.mkdir()
    for k in range(6):
        crop = places_batch[k, 96:160, 96:160]
        Image.fromarray(np.asarray(np.rint(crop * 255), np.uint8)).save(src / f"{k}.png")

    def config(out, **kw):
        # The default transfer parts stay on (their random draws must not depend on the worker);
        # margin 2 spares the lattice steps that a lead of 10 after 5 steps would add.
        return ProtectConfig((src,), out, models=("efficientnet-lite0",), channel="exact", steps=5, margin=2.0, batch_size=2, **kw)

    local = run(config(tmp_path / "local"), model_store.load_model)
    assert len(local.written) == 6
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}})
    try:
        remote = run(config(tmp_path / "ray", backend="ray", ray_workers=2), model_store.load_model)
        again = run(config(tmp_path / "ray", backend="ray", ray_workers=2), model_store.load_model)
        # A worker dies after writing and recording its first batch, before returning it: Ray
        # restarts it and retries the batch, which finds its files recorded by this run.
        cfg = config(tmp_path / "dead", backend="ray", ray_workers=2)
        from .ray_dying_worker import DiesOnce

        protector = build_protector(cfg, model_store.load_model)
        survived = run_on_ray(cfg, plan_jobs(cfg), protector, workers=2, worker=DiesOnce)
    finally:
        ray.shutdown()
    assert (tmp_path / "dead" / "died-once").exists()
    assert [r.error for r in survived] == [None] * 6 and all(r.protected is not None for r in survived)
    dead_records = [json.loads(line) for f in (tmp_path / "dead").glob(f"{MANIFEST_PREFIX}*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(r["output"] for r in dead_records if r["kind"] == "output") == [f"{k}.png" for k in range(6)]  # none twice
    for k in range(6):
        assert (tmp_path / "dead" / f"{k}.png").read_bytes() == (tmp_path / "local" / f"{k}.png").read_bytes()
    assert [r.error for r in remote.results] == [None] * 6 and len(remote.written) == 6
    for k in range(6):
        assert (tmp_path / "ray" / f"{k}.png").read_bytes() == (tmp_path / "local" / f"{k}.png").read_bytes()
    assert [r.protected for r in remote.results] == [r.protected for r in local.results]
    # Each worker kept its own manifest file; together they record every output once.
    files = sorted((tmp_path / "ray").glob(f"{MANIFEST_PREFIX}.ray-*.jsonl"))
    assert len(files) >= 1
    outputs = [json.loads(line)["output"] for f in files for line in f.read_text().splitlines() if '"kind": "output"' in line]
    assert sorted(outputs) == [f"{k}.png" for k in range(6)]
    assert again.skipped == 6  # the re-run finds them done
