"""`ppjax protect`: options into a :class:`~ppjax.protect.ProtectConfig`, then :func:`ppjax.protect.run`."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ppjax import store
from ppjax.cli.common import err, fail, left_out_line, load_or_fetch, out
from ppjax.io.naming import names_with_capture_time
from ppjax.protect.batch import DISK_FULL_REASON
from ppjax.protect.config import PANEL_MARGIN, STRENGTHS, Backend, Channel, Method, ObjectiveKind, OutputFormat, Penalty, ProtectConfig, Strength
from ppjax.store.private_key import local_key

_METHOD_HELP = (
    "Attack: pgd, fgsm, bim, mifgsm, cw (C&W-L2, Adam), pfgsm (towards a random class), masked (Concealed FGSM: "
    "only textured, non-salient areas change) or coupled (Concealed FGSM: classifier and NIMA gradients; needs NIMA). "
    "Looks like an edit instead of noise: edit (tone, curves and colour grade sliders), curves, tone or grade alone, or "
    "edit+pgd (the edit, then pixel noise within half the strength's eps where the edit alone does not protect); social channel only."
)


def _strength_help() -> str:
    """``--strength``'s help, from the presets themselves."""
    names = {"delta_e": "CIEDE2000", "mottle": "mottle %", "steps": "steps", "lattice_steps": "lattice steps", "margin": "margin", "min_psnr": "dB floor", "channel_rounds": "rounds", "scales": "scale copies", "focus": "focus"}
    varying = [k for k in names if len({preset[k] for preset in STRENGTHS.values()}) > 1]
    shown = lambda v: v if isinstance(v, str) else f"{v:g}"  # noqa: E731
    parts = [f"{name} ({', '.join(f'{names[k]} {shown(preset[k])}' for k in varying)})" for name, preset in STRENGTHS.items()]
    return "A preset of the attack's options: " + "; ".join(parts) + ". low is subtler, mid the defaults, high more protective and more visible. Options given explicitly win."


def _need_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'ppjax[ray]'") from None


#: What the progress line says after a first Ctrl+C.
STOPPING = "stopping after the photos in flight (Ctrl+C again to quit at once)"


def protect(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively; other files are named and left out).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Where protected images go, keeping each input's relative path and stem.")],
    model: Annotated[str, typer.Option(help=f"Classifier(s) to protect against, comma-separated for an ensemble (an image counts as protected only when every one is fooled): {', '.join(store.classifier_names())}, or the group {', '.join(store.MODEL_GROUPS)}.")] = "places365",
    ensemble: Annotated[str, typer.Option(help="How an ensemble's objectives join: loss (sum of each model's loss), balanced (the same sum with each model's gradient scaled to one mean magnitude), logits (the loss on the models' mean logits) or probs (on their mean probabilities); the last two need models with the same classes.")] = "loss",
    method: Annotated[Method, typer.Option(help=_METHOD_HELP)] = Method("pgd"),
    objective: Annotated[ObjectiveKind, typer.Option(help="ce (move away from the predicted class), margin (C&W margin), or sensitive (places365: leave all 60 sensitive scenes).")] = ObjectiveKind.CE,
    channel: Annotated[Channel, typer.Option(help="Threat model. social: the photo may be shrunk by the platform (long side 2048 or 1080), re-encoded as JPEG (4:2:0, quality 70-95) and resized by the attacker to 224 (Places365 demo: 256 then centre 224; or directly); the attack averages over draws of that channel and the written file is verified through the real one. exact: the classifier sees the written pixels as they are (the MediaEval 2019 protocol).")] = Channel.SOCIAL,
    channel_draws: Annotated[int, typer.Option(min=1, help="With --channel social: channel draws averaged per attack step.")] = 2,
    channel_rounds: Annotated[Optional[int], typer.Option(min=0, help="With --channel social: rounds of extra steps for images whose smallest lead over the real channel's variants is not over --panel-margin. Default: the strength's (3; low: 1).")] = None,
    panel_margin: Annotated[float, typer.Option(min=0.0, help="With --channel social: the smallest lead (logits) over the real channel's variants that makes a photo final without a later round. Default 0: later rounds only for a photo some variant still shows unprotected (10, the attack's margin, gives the rounds of before 2026-12-07: a quarter slower, no held-out protection gained on the photos measured).")] = PANEL_MARGIN,
    eps: Annotated[Optional[float], typer.Option(min=0.0, help="Budget: the largest change of any pixel, in 1/255 units (4 means 4/255). Default: the strength's: 8 around the perceptual budget (low 6, high 12; --delta-e bounds what shows), 4 with --delta-e off (low 3, high 6).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Attack steps (iterative methods). Default: the strength's (12; low 10, high 30).")] = None,
    lattice_steps: Annotated[Optional[int], typer.Option(min=0, help="Whole-level steps after the rounding to bytes, for a photo that lacks the margin there (pixel methods; 0: none). Default: the strength's (4; low and high 10; 10 for the edit methods).")] = None,
    margin: Annotated[Optional[float], typer.Option(min=0.0, help="Logit lead another class must have over the original's before an image counts as protected and stops changing. Default: the strength's (10; low 5, high 15; 2 for cw and pfgsm): a large lead on the attacked model carries over to models never seen.")] = None,
    diversity: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Input diversity: the probability per step that the classifier sees the image shrunk (to 85-100%) at a random place on black. Default 1, every step (0.7 for the edit methods; 0: off; cw and pfgsm take none).")] = None,
    smoothing: Annotated[Optional[int], typer.Option(min=0, help="Translation-invariant smoothing: the gradient blurred by a Gaussian of this odd side in pixels. Default 5 (0: off).")] = None,
    momentum: Annotated[Optional[float], typer.Option(min=0.0, help="Momentum: decay of the accumulated L1-normalised gradients. Default 1 (0: off).")] = None,
    scales: Annotated[Optional[int], typer.Option(min=1, help="Scale copies: the objective averaged over this many copies of the image with pixel values divided by 1, 2, 4, ... (SI). 3 carries over better after JPEG and resizes, at twice the time. Default 1 (off).")] = None,
    skip_gradient: Annotated[Optional[float], typer.Option(min=0.01, max=1.0, help="Skip gradient (SGM): the gradient through the attacked networks' residual branches scaled by this gamma, so that it leans on the skip paths (forward unchanged; networks without residual blocks are attacked as they are). Default 0.5 (1: off).")] = None,
    ghost: Annotated[Optional[float], typer.Option(min=0.0, max=0.5, help="Ghost networks: at each step every residual block's skip path of the attacked networks is multiplied by a random factor in [1-G, 1+G], so that the attack meets a new variant of each network at every step, at no extra cost (networks without residual blocks are attacked as they are). Default 0 (off).")] = None,
    spectrum: Annotated[Optional[float], typer.Option(min=0.0, max=0.99, help="Spectrum simulation (SSA): at each step the networks see the photo with faint noise and each of its DCT coefficients scaled by a random factor in [1-R, 1+R], as a network of another design might weigh them, at no extra cost. Default 0 (off).")] = None,
    flip: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Mirror: the probability per step that the networks see the photo flipped left to right, so that the change works on the mirrored scene too, at no extra cost. Default 0 (off).")] = None,
    min_psnr: Annotated[Optional[float], typer.Option(min=0.0, max=100.0, help="PSNR floor in dB: no written PNG differs from its original more than this allows; a photo that needs more stays less protected (0: no floor; JPEG output adds the encoder's own change). Default: the strength's (38; low 40, high 35).")] = None,
    delta_e: Annotated[Optional[str], typer.Option(help="Perceptual budget: how far each pixel may change in CIEDE2000, as FLAT,BUSY (on flat areas, rising to BUSY in busy texture; less in deep shadow and near white), inside the --eps ball; steps go where the eye sees least (lightness more than colour). 'off': the --eps ball alone. Default: the strength's (1.2,3; low 0.8,2; high 1.8,4.5); off for the methods other than pgd, bim, fgsm and mifgsm.")] = None,
    mottle: Annotated[Optional[str], typer.Option(help="Part of the perceptual budget: the most low-frequency luminance contrast the change may carry where the photo is smooth, in percent (what shows first on a dark sky or a wall: blotches, not single pixels); held by the attack and fitted on the bytes written. 'off': none. Default: the strength's (2; low 1.5, high 3) with --delta-e, off without.")] = None,
    focus: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Part of the perceptual budget: how far each pixel's step follows the size of its gradient (0: every pixel a step of its whole allowance, as a sign step; 1: in proportion to the gradient, as an L2 step), at the same mean step size; where the PSNR floor binds, the change goes where it fools most. Default: the strength's (mid and high 0.5; low 0) with --delta-e, 0 without.")] = None,
    strength: Annotated[Strength, typer.Option(help=_strength_help())] = Strength.MID,
    look: Annotated[Optional[str], typer.Option(help="With an edit method: the look its search starts from, a name (`ppjax looks list`) or a look's JSON file (`ppjax looks fit`).")] = None,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="With --look: apply the look as it is, with no search of each photo's own (still verified).")] = False,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 0,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format: auto (the input's kind: a JPEG or HEIC photo gives a JPEG, anything else a PNG), png (lossless) or jpeg. A JPEG is judged as decoded.")] = OutputFormat.AUTO,
    keep_metadata: Annotated[bool, typer.Option("--keep-metadata", help="Keep the camera details alone: make, model, lens, capture date and time, exposure, aperture, ISO, focal length, flash, white balance. Never GPS, time zone, XMP, IPTC, captions, names, serial numbers or the thumbnail. Default: no metadata at all.")] = False,
    private_names: Annotated[bool, typer.Option("--private-names", help="Name each output photo-<12 hex digits> in OUT itself (the same on every run on this computer), and record no input name: a phone's file names carry the date and time a photo was taken, and folder names can name a place. Default: each output keeps its input's name and folder.")] = False,
    jpeg_quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG quality with --format jpeg.")] = 95,
    jpeg_rounds: Annotated[int, typer.Option(min=0, help="With --format jpeg and --channel exact: rounds of extra steps through a differentiable JPEG for images the encoder un-protected (the social channel uses --channel-rounds).")] = 3,
    appeal: Annotated[Optional[float], typer.Option(min=0.0, help="Weight of NIMA's mean score (appeal) in the objective; needs the nima model. Default 0, or 1 with --method coupled.")] = None,
    penalty: Annotated[Optional[Penalty], typer.Option(help="Perceptual penalty added to the objective: ssim or ciede2000.")] = None,
    penalty_weight: Annotated[float, typer.Option(min=0.0, help="Weight of --penalty (SSIM is in [0, 1]; CIEDE2000 in its own units, ~2.3 just noticeable).")] = 10.0,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Photos per program call. Default: 1 on a CPU (as fast per photo, and each photo's bytes depend on nothing else), 8 on a GPU or TPU.")] = None,
    no_early_stop: Annotated[bool, typer.Option("--no-early-stop", help="Run all steps even for images already protected (for timing).")] = False,
    as_json: Annotated[Optional[Path], typer.Option("--json", help="Also write the summary and each image's result (protected, on how many channel variants, which not, PSNR, SSIM) to this JSON file.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Redo outputs that already exist. By default a re-run skips an output only when the folder's manifest records it as made from the same input bytes with the same settings (so an interrupted run resumes), and reports outputs made otherwise.")] = False,
    devices: Annotated[str, typer.Option(help="Local devices (GPUs, TPU cores, or CPU devices) to spread batches over: 'all' or how many. The bytes written do not depend on it.")] = "all",
    num_shards: Annotated[Optional[int], typer.Option(min=1, help="Split the inputs into this many shards (by a stable hash of each relative path) and protect only --shard-index: for the N copies of a scheduler's array job. Default: from PPJAX_NUM_SHARDS, SLURM_ARRAY_TASK_COUNT, else 1.")] = None,
    backend: Annotated[Backend, typer.Option(help="local: this process, on --devices. ray: a Ray cluster's workers, one per GPU (else per CPU), the same bytes (needs the extra ppjax[ray]).")] = Backend.LOCAL,
    ray_address: Annotated[Optional[str], typer.Option(help="With --backend ray: the cluster to join (as for ray.init; default: start a local one).")] = None,
    ray_workers: Annotated[Optional[int], typer.Option(min=1, help="With --backend ray: how many workers (default: one per GPU of the cluster, else one per CPU).")] = None,
    shard_index: Annotated[Optional[int], typer.Option(min=0, help="Which shard (0..N-1) this process protects. Default: from PPJAX_SHARD_INDEX, SLURM_ARRAY_TASK_ID, or JOB_COMPLETION_INDEX (Kubernetes Indexed Job).")] = None,
) -> None:
    """Change photos as little as needed so the classifier no longer infers their scene; verified on the written bytes."""
    from ppjax import protect as protection

    try:
        config = ProtectConfig(
            tuple(inputs), out_dir, models=tuple(model.split(",")), ensemble=ensemble, method=method, objective=objective, channel=channel,
            channel_draws=channel_draws, channel_rounds=channel_rounds, panel_margin=panel_margin, eps=eps, steps=steps, lattice_steps=lattice_steps, margin=margin,
            diversity=diversity, smoothing=smoothing, momentum=momentum, scales=scales, skip_gradient=skip_gradient, ghost=ghost, spectrum=spectrum, flip=flip, min_psnr=min_psnr, strength=strength,
            delta_e=delta_e, mottle=mottle, focus=focus, seed=seed, format=fmt, keep_metadata=keep_metadata, private_names=private_names, look=look, no_refine=no_refine, jpeg_quality=jpeg_quality, jpeg_rounds=jpeg_rounds, appeal=appeal, penalty=penalty,
            penalty_weight=penalty_weight, batch_size=batch_size, early_stop=not no_early_stop, overwrite=overwrite,
            devices=devices, num_shards=num_shards, shard_index=shard_index, backend=backend, ray_address=ray_address,
            ray_workers=ray_workers,
        )  # fmt: skip
        work = protection.plan(config)
        jobs = work.jobs
        local_key()  # made now, not after the attack of the first photo, where it is first needed
        if config.backend is Backend.LOCAL:
            protection.select_devices(config.devices)
        else:
            _need_ray()
    except ValueError as e:
        raise fail(str(e), 2) from None
    if work.left_out:
        err.print(left_out_line(work.left_out))
    if not config.private_names and (timed := names_with_capture_time([out for _, out in jobs])):
        err.print(
            f"note: {len(timed)} output name{'s carry' if len(timed) != 1 else ' carries'} the date a photo was taken (e.g. {escape(timed[0].name)}), "
            "which a platform reads even with the metadata gone; --private-names names them photo-<code> instead."
        )  # fmt: skip
    if not jobs:
        if protection.plan_jobs(replace(config, num_shards=1, shard_index=0)):
            out.print("no image files in this shard; nothing to do")
            return
        raise fail("no image files found in the given paths", 2)
    # This process is one run: its programs persist in the store (traced and compiled), so that the
    # next run skips both.
    store.use_jit_cache()
    try:
        protector = protection.build_protector(config, load_or_fetch, store.programs_folder())  # may fetch models: before the bar
    except ValueError as e:
        raise fail(str(e), 2) from None
    columns = (
        TextColumn("protecting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
        TextColumn("{task.fields[now]}"),
    )  # fmt: skip
    finished: list = []  # this run's photos written, should Ctrl+C stop it
    stopping: list = []  # the Ctrl+C heard
    interrupted = False
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("images", total=len(jobs), rate="", now="")
        start = time.perf_counter()

        def advance(n: int) -> None:
            elapsed = time.perf_counter() - start
            bar.update(task, completed=n, rate=f"{elapsed / n:.1f} s/photo" if n else "")

        def stage(source: Path, text: str) -> None:
            bar.update(task, now=STOPPING if stopping else f"{source.name}: {text}")

        def interrupt(signum, frame) -> None:
            # The first Ctrl+C stops the run once the photos in flight come back (seconds, or a
            # compile's minute on a first run); a second one quits at once, as a kill would (the
            # next run removes what that leaves half-written).
            if stopping:
                # Rich hid the cursor for the progress bar: give it back, or the shell is left without one.
                if err.is_terminal:
                    os.write(2, b"\x1b[?25h")
                os.write(2, f"\nquit at once: {len(finished)} photo(s) written in this run are kept and recorded; the next run removes "
                            "any partial file and goes on from there.\n".encode())
                os._exit(130)
            stopping.append(signum)
            bar.update(task, now=STOPPING)
            raise KeyboardInterrupt

        # Only the main thread may set a handler (a caller running the command on another thread
        # keeps Python's own Ctrl+C, which stops the run the same way, without the second press).
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, interrupt) if main else None
        try:
            summary = protection.run(
                config, load_or_fetch, progress=advance, stage=stage, work=work, protector=protector,
                on_result=lambda r: finished.append(r) if r.output is not None else None,
            )  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
    if interrupted:
        err.print(
            f"interrupted: {len(finished)} photo(s) written in this run, each recorded in {config.out_dir}'s manifest; "
            "no other file was left behind. The same command goes on from there.", markup=False,
        )  # fmt: skip
        raise typer.Exit(130)
    for r in summary.results:
        if r.renamed_from and r.output is not None:
            err.print(f"renamed: {r.source} is written as {r.output.name} ({r.renamed_from} is another input's output)", markup=False)
    for r in summary.failed:
        err.print(f"[red]error:[/] {escape(r.error)}", markup=True)
    skipped: dict[str, list] = {}  # by reason: a full disk skips every photo after it, for one reason
    for r in summary.results:
        if r.skipped and not r.skipped.startswith("done"):
            skipped.setdefault(r.skipped, []).append(r.output or r.source)
    for reason, paths in skipped.items():
        for path in paths[:3]:
            err.print(f"[yellow]skipped:[/] {escape(str(path))}: {escape(reason)}", markup=True)
        if len(paths) > 3:
            err.print(f"[yellow]skipped:[/] {len(paths) - 3} more: {escape(reason)}", markup=True)
    for r in summary.written:
        if not r.protected:
            where = f" on {len(r.unprotected_variants)} of {r.variants} variants: {', '.join(r.unprotected_variants[:4])}" if r.variants else ""
            err.print(f"[yellow]not protected:[/] {r.output} (the classifier still sees the original class{where})", markup=True)
    out.print(summary.line())
    if as_json:
        import json

        as_json.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    full = next((reason for reason in skipped if reason.startswith(DISK_FULL_REASON)), None)
    if full:
        err.print(
            f"stopped: {full.removeprefix('not written: ')}. The {len(summary.written)} photo(s) written in this run are kept and "
            "recorded; free some space, then the same command goes on from there.", markup=False,
        )  # fmt: skip
    if summary.failed or full:
        raise typer.Exit(1)
