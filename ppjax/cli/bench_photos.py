"""`ppjax bench jpeg`, `bench robustness`: how much protection survives on real photo files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ppjax.attacks import METHODS, NEEDS_APPEAL
from ppjax.cli.bench import _JSON_HELP, table
from ppjax.cli.common import choices, err, fail, load_or_fetch, out

#: The methods the JPEG bench runs: those that need no NIMA.
JpegMethod = choices("JpegMethod", (m for m in METHODS if m not in NEEDS_APPEAL))


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
    out.print(table(title, ("quality", "no rounds", f"{rounds} rounds", "PSNR (dB)", "seconds"), rows))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")


def bench_robustness(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos.", exists=True)],
    model: Annotated[str, typer.Option(help="Installed classifier(s) to protect against, comma-separated (or a group such as places365-family) for an ensemble; their ONNX graphs (exported from the original framework) judge, and a photo counts as protected when every one is fooled.")] = "efficientnet-lite0",
    eps: Annotated[Optional[float], typer.Option(min=0, help="L-infinity budget in 1/255, for every setting (default: the strength's).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Attack steps, for every setting (default: the strength's).")] = None,
    lattice_steps: Annotated[Optional[int], typer.Option(min=0, help="As for protect: whole-level steps after the rounding to bytes (default: the strength's).")] = None,
    strength: Annotated[str, typer.Option(help="As for protect: low, mid or high, for the exact and social settings (options given win).")] = "mid",
    method: Annotated[str, typer.Option(help="As for protect, for the social setting: pgd, or an edit method (edit, curves, tone, grade, edit+pgd).")] = "pgd",
    look: Annotated[Optional[str], typer.Option(help="As for protect, with an edit method: the look the search starts from.")] = None,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="As for protect: the look applied as it is.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Use at most this many photos (files in the order given, folders sorted).")] = 300,
    settings: Annotated[str, typer.Option(help="Comma-separated settings to compare: exact, social, plain PGD.")] = "exact,social,plain PGD",
    margin: Annotated[Optional[float], typer.Option(min=0.0, help="As for protect, for the exact and social settings (default: protect's).")] = None,
    diversity: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="As for protect (default: protect's).")] = None,
    smoothing: Annotated[Optional[int], typer.Option(min=0, help="As for protect (default: protect's).")] = None,
    skip_gradient: Annotated[Optional[float], typer.Option(min=0.01, max=1.0, help="As for protect (default: protect's).")] = None,
    ghost: Annotated[Optional[float], typer.Option(min=0.0, max=0.5, help="As for protect (default: protect's).")] = None,
    spectrum: Annotated[Optional[float], typer.Option(min=0.0, max=0.99, help="As for protect (default: protect's).")] = None,
    flip: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="As for protect (default: protect's).")] = None,
    focus: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="As for protect (default: protect's).")] = None,
    panel_margin: Annotated[Optional[float], typer.Option(min=0.0, help="As for protect, for the social setting (default: protect's).")] = None,
    momentum: Annotated[Optional[float], typer.Option(min=0.0, help="As for protect (default: protect's).")] = None,
    scales: Annotated[Optional[int], typer.Option(min=1, help="As for protect (default: protect's).")] = None,
    min_psnr: Annotated[Optional[float], typer.Option(min=0.0, max=100.0, help="As for protect: the PSNR floor in dB, 0 for none (default: protect's).")] = None,
    delta_e: Annotated[Optional[str], typer.Option(help="As for protect: the perceptual budget FLAT,BUSY in CIEDE2000, or off (default: protect's).")] = None,
    mottle: Annotated[Optional[str], typer.Option(help="As for protect: the cap on low-frequency luminance contrast on smooth areas, in percent, or off (default: protect's).")] = None,
    ensemble: Annotated[Optional[str], typer.Option(help="As for protect: how an ensemble's objectives join (loss, balanced, logits, probs).")] = None,
    judge: Annotated[Optional[str], typer.Option(help="Held-out classifiers, comma-separated, that also judge every setting (their ONNX Runtime graphs), in their own table: how well the protection transfers to models it never saw. Must not be --model.")] = None,
    timing: Annotated[Optional[Path], typer.Option(help="Also time `ppjax protect` (social) on this photo resized to 256x256, 2560x1600 and 4032x3024: seconds and peak memory per photo.")] = None,
    as_json: Annotated[Optional[Path], typer.Option("--json", help=_JSON_HELP)] = None,
) -> None:
    """Protection that survives the trip: protected share as written, after JPEG q90/q75 re-encodes and the attacker's resizes, judged by ONNX Runtime; PSNR; optionally time and memory per photo size."""
    from ppjax.bench.robustness import COLUMNS, SETTINGS, prepare_models, run_robustness_bench, run_timing
    from ppjax.evaluate.engines import EngineError
    from ppjax.io import iter_image_files

    chosen = [s.strip() for s in settings.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SETTINGS]
    if unknown or not chosen:
        raise fail(f"--settings must name some of: {', '.join(SETTINGS)}", 2)
    files = [f for f, _ in iter_image_files(photos)][:limit]
    if not files:
        raise fail("no image files found in the given paths", 2)
    try:
        names, loaded, onnx_judges, held_out = prepare_models(model, judge, ensemble, load_or_fetch, timing=timing is not None)
    except ValueError as e:
        raise fail(str(e), 2) from None
    except EngineError as e:
        raise fail(str(e), 2 if "held out" in str(e) else 1) from None
    from ppjax.protect.config import STRENGTHS

    if strength not in STRENGTHS:
        raise fail(f"--strength must be one of {', '.join(STRENGTHS)}", 2)
    from ppjax import attacks

    if method not in attacks.METHODS or (method != "pgd" and not attacks.METHODS[method].edit):
        raise fail(f"--method must be pgd or one of {', '.join(sorted(attacks.EDIT_METHODS))}", 2)
    if method != "pgd" and [s for s in chosen if s != "social"]:
        raise fail(f"--method {method} runs under the social setting only: add --settings social", 2)
    if no_refine and not look:
        raise fail("--no-refine needs --look", 2)
    attack = {"method": method, "look": look, "no_refine": no_refine or None, "strength": strength, "margin": margin, "diversity": diversity, "smoothing": smoothing, "momentum": momentum, "scales": scales, "skip_gradient": skip_gradient, "ghost": ghost, "spectrum": spectrum, "flip": flip, "panel_margin": panel_margin, "lattice_steps": lattice_steps, "min_psnr": min_psnr, "ensemble": ensemble, "delta_e": delta_e, "mottle": mottle, "focus": focus}
    results = run_robustness_bench(loaded, onnx_judges, files, eps=eps, steps=steps, settings=chosen, log=lambda s: err.print(s), judges=held_out, attack=attack)
    results["models"] = list(names)
    model = ",".join(names)
    nan = float("nan")
    rows = [
        (r["setting"], *(f"{r[c]:.1%}" for c in COLUMNS), f"{r['psnr']:.2f}", f"{r.get('ciede2000', nan):.2f}", f"{r.get('ciede2000_p95', nan):.2f}",
         f"{r.get('blocks_seen', nan):.1%} / {r.get('blocks_seen_max', nan):.1%}", f"{r.get('mottle_p95', nan):.1%}",
         f"{r.get('blocks_mottled', nan):.1%} / {r.get('blocks_mottled_max', nan):.1%}", f"{r.get('grain_255', nan):.2f}", f"{r['seconds']:.0f}")
        for r in results["rows"]
    ]  # fmt: skip
    title = f"{model}, --method {method}, --strength {strength}, eps {results['eps_255']:g}/255, {results['steps']} steps: protected share of {results['photos']} photos, judged by ONNX Runtime"
    headers = ("setting", *COLUMNS, "PSNR (dB)", "CIEDE2000", "CIEDE2000 p95", "blocks seen (mean / worst)", "mottle p95", "smooth blocks mottled (mean / worst)", "grain (1/255)", "seconds")
    out.print(table(title, headers, rows), width=max(out.width, 220))
    from ppjax import store

    for name in held_out:
        rows = [(r["setting"], *(f"{r['held_out'][name][c]:.1%}" for c in COLUMNS), f"{r['psnr']:.2f}") for r in results["rows"]]
        runtime = "LiteRT on its own TFLite file" if store.entry(name).runtime_file else "ONNX Runtime"
        title = f"the same files judged by held-out {name} (never attacked; {runtime}): protected share of {results['photos']} photos"
        out.print(table(title, ("setting", *COLUMNS, "PSNR (dB)"), rows), width=max(out.width, 170))
    if timing is not None:
        results["timing"] = run_timing(model, timing, eps=results["eps_255"], steps=results["steps"], log=lambda s: err.print(s), attack=attack)
        rows = [(f"{r['width']}x{r['height']}", f"{r['seconds']:.1f}", f"{r['first_seconds']:.1f}", f"{r['peak_rss_gb']:.2f}") for r in results["timing"]]
        out.print(table("ppjax protect (social), one photo per size", ("size", "s per photo", "first run (s)", "peak RSS (GB)"), rows))
    if as_json:
        as_json.write_text(json.dumps(results, indent=2) + "\n")
