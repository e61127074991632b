"""`ppjax bench scale`: images per second of `ppjax protect` on 1, 2, 4... local devices and on Ray
workers, against one device, in one run.

Each setting runs in a child process (the device count is fixed when JAX starts; on a CPU-only
machine the children get ``JAX_NUM_CPU_DEVICES``, on a GPU machine they see its GPUs). A child
first protects one full batch per device (each device compiles its programs; that time is
reported apart), then protects the photos into a fresh folder, timed. Photos are resized to one
size so that the timed pass compiles nothing. The Ray setting starts a local cluster with
``ray_cpus`` CPUs and that many workers; its compile-free pass is a second run (the workers load
the first run's programs from the store's persistent cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from ppjax.io import read_image

__all__ = ["run_scale_bench"]


def _prepare(photos: list[Path], size: int, dst: Path) -> Path:
    """The photos resized to ``size`` x ``size`` (bicubic) as PNG in ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for k, p in enumerate(photos):
        Image.fromarray(read_image(p).rgb).resize((size, size), Image.Resampling.BICUBIC).save(dst / f"{k:05d}.png")
    return dst


def run_scale_bench(
    model: str,
    photos: list[Path],
    *,
    devices=(1, 2, 4),
    ray_workers: int = 2,
    size: int = 224,
    channel: str = "exact",
    steps: int = 20,
    batch_size: int = 8,
    log=print,
) -> dict:
    """Figures per setting: images, seconds, images/s, speed-up against one device, compile seconds."""
    import jax

    platform = jax.devices()[0].platform
    rows = []
    with tempfile.TemporaryDirectory(prefix="ppjax-bench-scale-") as tmp:
        src = _prepare(photos, size, Path(tmp) / "in")
        settings = [("devices", n) for n in devices] + ([("ray", ray_workers)] if ray_workers else [])
        for kind, n in settings:
            env = {**os.environ}
            if platform == "cpu":
                env["JAX_NUM_CPU_DEVICES"] = str(max(devices) if kind == "devices" else 1)
            cmd = [sys.executable, "-m", "ppjax.bench.scale", kind, str(n), model, str(src), str(Path(tmp) / f"{kind}-{n}"), channel, str(steps), str(batch_size)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{kind} {n}: the child failed: {done.stderr.strip()[-2000:]}")
            row = {"setting": f"{n} device{'s' if n > 1 else ''}" if kind == "devices" else f"Ray, {n} workers", **json.loads(done.stdout.strip().splitlines()[-1])}
            log(f"{row['setting']}: {row['images']} images in {row['seconds']:.1f} s, {row['images_per_s']:.2f} img/s (compile {row['compile_seconds']:.0f} s)")
            rows.append(row)
    one = next((r["images_per_s"] for r in rows if r["setting"] == "1 device"), None)
    for r in rows:
        r["speedup"] = r["images_per_s"] / one if one else None
    return {"model": model, "platform": platform, "device_kind": jax.devices()[0].device_kind, "size": size,
            "channel": channel, "steps": steps, "batch_size": batch_size, "photos": len(photos), "rows": rows}  # fmt: skip


def _child(kind: str, n: int, model: str, src: Path, out: Path, channel: str, steps: int, batch_size: int) -> dict:
    from ppjax import store
    from ppjax.protect import ProtectConfig, run

    store.use_jit_cache()
    files = sorted(src.iterdir())

    def config(inputs, dst, **kw):
        return ProtectConfig(tuple(inputs), dst, models=(model,), channel=channel, steps=steps, batch_size=batch_size, **kw)

    if kind == "ray":
        import ray

        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
        try:
            start = time.perf_counter()
            run(config(files[: batch_size * n], out / "warm", backend="ray", ray_workers=n), store.load_model)
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
            summary = run(config([src], out / "timed", backend="ray", ray_workers=n), store.load_model)
            seconds = time.perf_counter() - start
        finally:
            ray.shutdown()
    else:
        start = time.perf_counter()
        run(config(files[: batch_size * n], out / "warm", devices=str(n)), store.load_model)  # one batch per device
        compile_s = time.perf_counter() - start
        summary = run(config([src], out / "timed", devices=str(n)), store.load_model)
        seconds = summary.seconds  # the protection itself, not loading the model
    if summary.failed:
        raise RuntimeError(summary.failed[0].error)
    images = len(summary.written)
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds, "compile_seconds": compile_s,
            "protected": sum(bool(r.protected) for r in summary.written)}  # fmt: skip


if __name__ == "__main__":  # the child: KIND N MODEL SRC OUT CHANNEL STEPS BATCH
    kind_arg, n_arg, model_arg, src_arg, out_arg, channel_arg, steps_arg, batch_arg = sys.argv[1:9]
    print(json.dumps(_child(kind_arg, int(n_arg), model_arg, Path(src_arg), Path(out_arg), channel_arg, int(steps_arg), int(batch_arg))))
