"""`ppjax bench profile`: where a photo's wall time goes, stage by stage.

In one process, as `ppjax protect` runs: the process's start up to the command (imports), loading
the model, building the protector, then passes over the same photos with `ppjax protect`'s
defaults: the first (its programs compiled, or loaded from the store); a warm pass with one batch in
flight, so that each stage's seconds are its own (what the stages cost); and a warm pass as
`ppjax protect` runs, two batches in flight so that one's host work overlaps the other's program
(what a person waits). Each pass reports its wall time and the seconds of each stage
(:class:`ppjax.protect.timings.StageClock`); with two in flight, stages overlap and add up to more
than the wall.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["process_age", "run_profile"]


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), None where that cannot be read."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _pass(config, load, protector, in_flight: int | None = None) -> dict:
    from ppjax.protect.runner import run
    from ppjax.protect.timings import StageClock

    clock = StageClock()
    start = time.perf_counter()
    summary = run(config, load, protector=protector, clock=clock, in_flight=in_flight)
    wall = time.perf_counter() - start
    written = [r for r in summary.results if r.output is not None]
    n = max(len(written), 1)
    return {
        "photos": len(written), "wall_s": wall, "per_photo_s": wall / n, "protected": sum(bool(r.protected) for r in written),
        "stages": [{"stage": s, "seconds": sec, "per_photo_s": sec / n, "calls": calls, "share_of_wall": sec / wall if wall else 0.0}
                   for s, sec, calls in clock.rows()],
    }  # fmt: skip


def run_profile(photos: list[Path], model: str, out_dir: Path, *, strength: str = "mid", log=print) -> dict:
    """The figures of the module docstring for ``photos`` protected against ``model`` (installed),
    written under ``out_dir`` (``first/``, ``serial/`` and ``warm/``)."""
    started = process_age()
    from ppjax import store
    from ppjax.protect.config import ProtectConfig
    from ppjax.protect.runner import build_protector

    store.use_jit_cache()
    t = time.perf_counter()
    loaded = store.load_model(model)
    load_s = time.perf_counter() - t
    load = lambda name: loaded if name == model else store.load_model(name)  # noqa: E731
    config = ProtectConfig(tuple(photos), out_dir / "first", models=(model,), strength=strength, overwrite=True)
    t = time.perf_counter()
    protector = build_protector(config, load, store.programs_folder())
    build_s = time.perf_counter() - t
    log(f"first pass over {len(photos)} photos (compiling, or loading the store's programs)")
    first = _pass(config, load, protector)
    log(f"warm pass over the same {len(photos)} photos, one batch in flight")
    serial = _pass(ProtectConfig(tuple(photos), out_dir / "serial", models=(model,), strength=strength, overwrite=True), load, protector, 1)
    log(f"warm pass over the same {len(photos)} photos, as ppjax protect runs")
    warm = _pass(ProtectConfig(tuple(photos), out_dir / "warm", models=(model,), strength=strength, overwrite=True), load, protector)
    return {
        "model": model, "strength": strength, "process_start_s": started, "model_load_s": load_s, "protector_build_s": build_s,
        "first": first, "serial": serial, "warm": warm,
    }  # fmt: skip
