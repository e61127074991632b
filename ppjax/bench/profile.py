"""`ppjax bench profile`: where a photo's wall time goes, stage by stage.

In one process, as `ppjax protect` runs: the process's start up to the command (imports), loading
the model, building the protector, then passes over the same photos with `ppjax protect`'s
defaults: the first (its programs compiled, or loaded from the store); a warm pass with one batch in
flight, so that each stage's seconds are its own (what the stages cost); and a warm pass as
`ppjax protect` runs, two batches in flight so that one's host work overlaps the other's program
(what a person waits). Each pass reports its wall time and the seconds of each stage
(:class:`ppjax.protect.timings.StageClock`); with two in flight, stages overlap and add up to more
than the wall. Then, on the first photo, one step of the attack's program split into its parts
(:func:`attack_parts`), each part compiled and timed alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["process_age", "attack_parts", "run_profile"]


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


def _median_ms(fn, *args, repeats: int = 5) -> float:
    from ppjax.bench.timing import median_seconds

    return 1000.0 * median_seconds(fn, *args, repeats=repeats)[0]


def attack_parts(protector, photo: Path, names=()) -> list[tuple[str, float]]:
    """(part, milliseconds) of one step of the social channel's attack on ``photo`` (read as
    ``ppjax protect`` reads it), each part jitted alone, median of 5 calls: the channel's stand-ins
    and the attacked models' forward and backward on what they see, then one whole step of the
    protection program ((9 steps - 1 step) / 8) and what the program does once per call (the labels,
    the original's class through each draw, the leads, the rounding to bytes). ``names``: the
    attacked models' names, in the protector's order."""
    import jax
    import jax.numpy as jnp

    from ppjax.attacks.transfer import diverse_inputs
    from ppjax.io.images import read_image, to_float01
    from ppjax.ops.bands import resize_view
    from ppjax.ops.channel import canvas_targets
    from ppjax.ops.jpeg import jpeg_round_trip
    from ppjax.protect.batch import image_keys
    from ppjax.protect.fullsize import working_copy

    p = protector
    rgb = read_image(photo).rgb
    work = working_copy(rgb, p.work_plan(*rgb.shape[:2])[0])
    canvas = p.photo_canvas(*rgb.shape[:2])
    x, geometry = p.layout(canvas, [work])
    x01, keys = jnp.asarray(to_float01(x)), image_keys(0, [photo], 1)
    geometry = jax.tree_util.tree_map(jnp.asarray, geometry)
    targets, _ = p._bound(p._variables)
    draws = p._draws(canvas.exact)

    def gradient_of(f):
        return jax.jit(jax.grad(lambda a: jnp.sum(f(a))))

    def views_of(a):
        return jnp.concatenate([resize_view(a, geometry.rows, geometry.cols, v) for v in range(draws.draws)])

    views = views_of(x01)
    quality = jnp.full((1,), 80, jnp.int32)
    parts = [
        (f"the attacker's views of the {canvas.label()} canvas, {draws.draws} draws (resize to 224)", _median_ms(gradient_of(views_of), x01)),
        ("JPEG 4:2:0 round trip of the canvas", _median_ms(gradient_of(lambda a: jpeg_round_trip(a, quality, "4:2:0", geometry.valid)), x01)),
    ]  # fmt: skip
    if p.transfer is not None and p.transfer.diversity:
        parts.append(("input diversity (shrink and shift)", _median_ms(gradient_of(lambda a: diverse_inputs(a, keys, 1, p.transfer.diversity, p.transfer.diversity_scale, geometry.valid)), x01)))
    names = [*names, *(f"model {i + 1}" for i in range(len(names), len(targets)))]
    for name, t in zip(names, targets):
        parts.append((f"{name}: the {draws.draws} draws' views (224x224)", _median_ms(gradient_of(lambda a, t=t: t.apply(t.variables, a)[:, 0]), views)))
    if canvas.exact:
        for name, t in zip(names, canvas_targets(targets, geometry)):
            parts.append((f"{name}: the photo whole, on its canvas (masked)", _median_ms(gradient_of(lambda a, t=t: t.apply(t.variables, a)[:, 0]), x01)))
    run = p._programs["run"]

    def program(steps):
        return run(p._variables, keys, x01, geometry, x01, jnp.int32(steps), jnp.int32(0), exact=canvas.exact)[0]

    one, nine = _median_ms(program, 1, repeats=3), _median_ms(program, 9, repeats=3)
    step = (nine - one) / 8
    parts += [("one step of the protection program, all of the above and the step rule", step), ("the program's once-a-call work (labels, leads, rounding)", one - step)]
    return parts


def run_profile(photos: list[Path], model: str, out_dir: Path, *, strength: str = "mid", log=print) -> dict:
    """The figures of the module docstring for ``photos`` protected against ``model`` (installed),
    written under ``out_dir`` (``first/``, ``serial/`` and ``warm/``)."""
    started = process_age()
    from ppjax import store
    from ppjax.protect.config import ProtectConfig, expand_models
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
    log(f"one attack step on {photos[0].name}, part by part")
    parts = [{"part": name, "ms": ms} for name, ms in attack_parts(protector, photos[0], expand_models(config.models))] if protector.channel == "social" and not protector.is_edit else []
    return {
        "model": model, "strength": strength, "process_start_s": started, "model_load_s": load_s, "protector_build_s": build_s,
        "first": first, "serial": serial, "warm": warm, "attack_step": parts,
    }  # fmt: skip
