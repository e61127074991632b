"""`ppjax bench album`, `bench scale`: what a run of `ppjax protect` costs, per album and per device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ppjax.cli.bench import _JSON_HELP, table
from ppjax.cli.common import err, fail, load_or_fetch, out


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
    out.print(table(title, ("setting", "images", "seconds", "images/s", "vs 1 device", "warm-up (s)"), rows))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


def bench_album(
    photos: Annotated[Optional[list[Path]], typer.Argument(help="Photos to make the albums from (default: the 8 photographs in ../shared/data/fullres).", show_default=False)] = None,
    model: Annotated[str, typer.Option(help="Classifier to protect against (installed into each fresh store).")] = "efficientnet-lite0",
    odd: Annotated[bool, typer.Option(help="Also time seven small odd images (five 64x64, a 3x2000 strip, a 1x1 dot) from a fresh store.")] = True,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Seconds a person waits: an album of eight photos in eight phone and laptop sizes, cold from a fresh store (import included) and warm in a new process (other photos), with peak memory and verdicts."""
    from ppjax.bench.album import run_album_bench
    from ppjax.io import iter_image_files

    if not photos:
        default = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fullres"
        if not default.is_dir():
            raise fail("give photos to make the albums from (../shared/data/fullres is not there)", 2)
        photos = [default]
    files = sorted(f for f, _ in iter_image_files(photos))
    if not files:
        raise fail("no image files found in the given paths", 2)
    try:
        results = run_album_bench(files, model, odd=odd, log=lambda s: err.print(s))
    except RuntimeError as e:
        raise fail(str(e)) from None
    rows = [
        (r["run"], f"{r.get('seconds_with_import', r['seconds']):.1f}", f"{r['peak_rss_gb']:.2f}", f"{r['protected']}/{r['photos']}",
         f"{r['variants_protected']}/{r['variants']}" if r["variants"] else "-", f"{r['mean_psnr_db']:.2f}" if r["mean_psnr_db"] else "-", str(r["programs"]))
        for r in results["rows"]
    ]  # fmt: skip
    title = f"ppjax protect --model {model}, each run a new process, on {results['cpus']} CPUs"
    wide = max(out.width, 150)
    out.print(table(title, ("run", "seconds", "peak RSS (GB)", "protected", "image-variants", "PSNR (dB)", "attack programs"), rows), width=wide)
    rows = [(r["size"], str(r["photos"]), f"{r['seconds_per_photo']:.1f}", f"{r['peak_rss_gb']:.2f}", f"{r['protected']}/{r['photos']}") for r in results["per_photo"]]
    caption = f"12 MP / 256x256: {results['ratio_12mp_256']:.2f}"
    out.print(table("seconds per photo, warm (a new process, programs in the store)", ("size", "photos", "s per photo", "peak RSS (GB)", "protected"), rows, caption), width=wide)
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


def bench_crops(
    photos: Annotated[list[Path], typer.Argument(help="Photos to protect and crop (files or folders).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Where the crops, figures.json and the page README.md go.")],
    model: Annotated[str, typer.Option(help="Classifier to protect against.")] = "efficientnet-lite0",
    crop: Annotated[int, typer.Option(min=32, help="Side of each crop in pixels, at full resolution.")] = 192,
) -> None:
    """Crops at 100%, before and after, at each visibility preset (and the eps ball alone): a page that shows what the CIEDE2000 figures mean."""
    from ppjax.bench.crops import run_crops
    from ppjax.io import iter_image_files

    files = sorted(f for f, _ in iter_image_files(photos))
    if not files:
        raise fail("no image files found in the given paths", 2)
    try:
        figures = run_crops(files, out_dir, model, crop, log=lambda s: err.print(s))
    except RuntimeError as e:
        raise fail(str(e)) from None
    out.print(f"{len(figures['photos'])} photos, {len(figures['settings'])} settings: {out_dir / 'README.md'}")


def bench_profile(
    photos: Annotated[list[Path], typer.Argument(help="Photos to protect (files or folders); one size per run shows that size's costs.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Where the protected photos go (first/, serial/ and warm/; overwritten).")],
    model: Annotated[str, typer.Option(help="Classifier to protect against.")] = "efficientnet-lite0",
    strength: Annotated[str, typer.Option(help="Strength preset of the runs: low, mid or high.")] = "mid",
    limit: Annotated[int, typer.Option(min=1, help="Use at most this many photos.")] = 8,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Where a photo's wall time goes: process start, model load, then each stage of a first pass, a warm pass one batch at a time, and a warm pass as `ppjax protect` runs (seconds per photo); then one attack step on the first photo, part by part."""
    from ppjax.bench.profile import run_profile
    from ppjax.io import iter_image_files

    if strength not in ("low", "mid", "high"):
        raise fail("--strength must be low, mid or high", 2)
    files = sorted(f for f, _ in iter_image_files(photos))[:limit]
    if not files:
        raise fail("no image files found in the given paths", 2)
    load_or_fetch(model)
    results = run_profile(files, model, out_dir, strength=strength, log=lambda s: err.print(s))
    start = results["process_start_s"]
    out.print(
        f"process start to the command {start:.2f} s (imports)" if start is not None else "process start: not measurable here",
        f"; model load {results['model_load_s']:.2f} s; protector {results['protector_build_s']:.2f} s",
        sep="",
    )
    for name in ("first", "serial", "warm"):
        p = results[name]
        out.print(f"\n{name} pass: {p['photos']} photos in {p['wall_s']:.1f} s ({p['per_photo_s']:.2f} s a photo), {p['protected']} protected")
        out.print(f"{'stage':<52} {'seconds':>8} {'s a photo':>10} {'of wall':>8} {'calls':>6}")
        for s in p["stages"]:
            out.print(f"{s['stage']:<52} {s['seconds']:>8.2f} {s['per_photo_s']:>10.3f} {100 * s['share_of_wall']:>7.0f}% {s['calls']:>6}")
    out.print("(serial: one batch in flight, each stage's own seconds; first and warm: as ppjax protect runs, two in flight, stages overlap)")
    if results["attack_step"]:
        out.print(f"\none attack step on {files[0].name}, each part compiled alone (forward and backward, median of 5 calls)")
        for part in results["attack_step"]:
            out.print(f"{part['part']:<72} {part['ms']:>8.1f} ms")
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")
