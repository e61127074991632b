"""The same protection run on a Ray cluster (``ppjax protect --backend ray``; extra ``ppjax[ray]``).

The driver plans the jobs (shards included), skips what the output folder's manifest records as
done, and hands the rest to Ray Data as a list of (input, output) paths. A pool of actors, one per
GPU (or one per CPU slot where there are no GPUs), each builds the protector once and runs
:func:`~ppjax.protect.files.protect_files` on its batches, writing outputs and its own manifest
file in the output folder, which every worker must reach (shared storage, as for a cluster's
inputs). Compiled programs go to the model store's ``jit-cache``: with ``PPJAX_HOME`` on shared
storage, a program compiled by one worker is loaded, not compiled again, by the others.

Ray restarts a dead actor and retries its batch; the retry reads the manifests again, and an output
this run already recorded is not written twice (see :class:`~ppjax.protect.manifest.Manifest`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ppjax.protect.config import ProtectConfig
from ppjax.protect.files import ProtectResult, plan_work
from ppjax.protect.manifest import Manifest

__all__ = ["run_on_ray"]


class _Worker:
    """One Ray actor: a protector built once, then batches of jobs."""

    def __init__(self, config: ProtectConfig, fingerprint: str, run_id: str, store_home: str | None, secret: bytes | None = None):
        if store_home:
            os.environ["PPJAX_HOME"] = store_home
        from ppjax import store
        from ppjax.protect.devices import select_devices
        from ppjax.protect.runner import build_protector, run_settings

        store.use_jit_cache()
        self.config = config
        self.protector = build_protector(config, store.load_model, store.programs_folder())
        settings = run_settings(config, self.protector)
        self.manifest = Manifest(config.out_dir, settings, name=f"ray-{run_id[:12]}-{os.getpid()}-{time.time_ns() % 10**9}", run_id=run_id, secret=secret, input_names=not config.private_names)
        if self.manifest.fingerprint != fingerprint:
            raise RuntimeError("this Ray worker's models differ from the driver's (another PPJAX_HOME, or other weights)")
        self.devices = select_devices(config.devices)

    def __call__(self, batch: dict) -> dict:
        from ppjax.protect.files import protect_files

        c = self.config
        jobs = [(Path(s), Path(o)) for s, o in zip(batch["source"], batch["output"])]
        results = protect_files(
            self.protector, jobs, seed=c.seed, max_batch=c.batch_size, jpeg_quality=c.jpeg_quality, jpeg_rounds=c.jpeg_rounds,
            overwrite=c.overwrite, channel_rounds=c.channel_rounds, panel_margin=c.panel_margin, manifest=self.manifest, devices=self.devices, keep_metadata=c.keep_metadata,
        )  # fmt: skip
        return {"result": np.array([json.dumps(r.to_json()) for r in results], dtype=object)}


def run_on_ray(
    config: ProtectConfig,
    jobs: list,
    protector,
    *,
    address: str | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    init_options: dict | None = None,
    worker=None,
) -> list[ProtectResult]:
    """Protect ``jobs`` on Ray (``ray.init(address=address)``: a running cluster, or a local one
    when None). ``protector`` is the driver's, used for the settings' fingerprint only. ``workers``
    actors (default: the cluster's GPUs, else its CPUs); ``worker``: the actor class (default
    ``_Worker``; a subclass may add to it). Results in the order of ``jobs``."""
    import ray

    from ppjax import store
    from ppjax.protect.runner import run_settings

    if not ray.is_initialized():
        ray.init(address=address, **(init_options or {}))
    manifest = Manifest(config.out_dir, run_settings(config, protector), input_names=not config.private_names)
    pending, results = plan_work(jobs, manifest, config.overwrite)
    if progress:
        progress(len(results))
    if pending:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        size = workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
        per_worker = {"num_gpus": 1} if gpus else {"num_cpus": max(1, int(ray.cluster_resources().get("CPU", 1)) // size)}
        data = ray.data.from_items([{"source": str(s), "output": str(o)} for s, o in pending])
        store_home = str(store.store_root())
        out = data.map_batches(
            worker or _Worker, fn_constructor_kwargs={"config": config, "fingerprint": manifest.fingerprint, "run_id": manifest.run_id, "store_home": store_home, "secret": manifest.secret},
            batch_size=config.batch_size, compute=ray.data.ActorPoolStrategy(size=size), batch_format="numpy",
            max_restarts=-1, max_task_retries=-1, **per_worker,
        )  # fmt: skip
        for row in out.iter_rows():
            results.append(ProtectResult.from_json(json.loads(row["result"])))
            if progress:
                progress(len(results))
    order = {src: n for n, (src, _) in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.source])
