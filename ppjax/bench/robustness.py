"""`ppjax bench robustness`: how much protection survives the trip from "share" to "classify".

The same photos are protected three ways against one classifier, into a temporary folder:

- ``exact``: ``ppjax protect --channel exact`` (the MediaEval 2019 protocol: the written pixels at
  the classifier's input);
- ``social``: ``ppjax protect`` with its defaults (``--channel social``);
- ``plain PGD``: a plain PGD loop at the same budget, as a peer runs it: random start, ``steps``
  sign steps of 1/255 on the exact pixels, no early stop, no margin, no verification.

Each written file is decoded and passed through real variants of the channel on Pillow
(:mod:`ppjax.io.real_channel`): as written, JPEG re-encodes at quality 90 and 75 (4:2:0), the
attacker's resize to 224 (bilinear and bicubic), the Places365 demo's 256 + centre 224, and the
whole social panel. The judge is the model's ONNX Runtime graph, exported from its original
framework at install: an engine the attack never ran. A photo counts as protected on a variant
when the judge's top-1 class of the protected file through that variant differs from its top-1
class of the original photo through the same variant.

"As written" and the JPEG columns feed the pixels whole for photos of at most
:data:`ppjax.ops.channel.EXACT_VIEW_MAX_SIDE` pixels; a larger photo is never classified at full
size, and those columns then use the direct resize to 224 (bilinear).

``timing`` runs ``ppjax protect`` (social, the same settings) on one photo per size in a child
process each: seconds per photo once compiled, and the child's peak resident memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ppjax.io import ImageReadError, read_image
from ppjax.io.real_channel import apply_real
from ppjax.ops.channel import EXACT_VIEW_MAX_SIDE, Variant, panel

__all__ = ["ATTACK_OPTIONS", "COLUMNS", "SETTINGS", "TIMING_SIZES", "prepare_models", "run_robustness_bench", "run_timing"]

#: Timing sizes (width, height): the task's images, the shared full-resolution photos, 12 MP.
TIMING_SIZES = ((256, 256), (2560, 1600), (4032, 3024))
#: The protections compared.
SETTINGS = ("exact", "social", "plain PGD")


def _whole(h: int, w: int, quality: int | None = None) -> Variant:
    if max(h, w) <= EXACT_VIEW_MAX_SIDE:
        return Variant("exact", quality=quality)
    return Variant("direct", "bilinear", quality)


#: Column name -> the variants (for an (h, w) photo) the judge must be fooled on.
COLUMNS: dict[str, Callable[[int, int], tuple[Variant, ...]]] = {
    "as written": lambda h, w: (_whole(h, w),),
    "JPEG q90": lambda h, w: (_whole(h, w, 90),),
    "JPEG q75": lambda h, w: (_whole(h, w, 75),),
    "resize 224 bilinear": lambda h, w: (Variant("direct", "bilinear"),),
    "resize 224 bicubic": lambda h, w: (Variant("direct", "bicubic"),),
    "demo 256+224": lambda h, w: (Variant("demo", "bilinear"),),
    "social panel": lambda h, w: panel("social", h, w),
}


#: The attack options a run may set for its exact and social settings (None or absent: `ppjax
#: protect`'s defaults): the method (default pgd), the strength preset, margin, the transfer parts, the PSNR floor, the
#: ensemble's fusion, the perceptual budget and the real panel's margin for later rounds.
ATTACK_OPTIONS = (
    "method", "look", "no_refine", "strength", "margin", "diversity", "smoothing", "momentum", "scales", "skip_gradient", "ghost", "spectrum", "flip",
    "min_psnr", "ensemble", "delta_e", "mottle", "focus", "panel_margin", "lattice_steps",
)  # fmt: skip


#: The plain PGD setting's steps unless ``--steps`` is given: the peer's loop it stands for (20 sign
#: steps of 1/255), whatever the strength's steps are.
PLAIN_PGD_STEPS = 20


def _preset(attack: dict) -> dict:
    """The strength preset's options with the method's own defaults over them (``attack`` names
    both; pgd and mid by default), as `ppjax protect` takes them when none is given."""
    from ppjax.protect.config import STRENGTHS, method_defaults

    strength, method = attack.get("strength", "mid"), attack.get("method", "pgd")
    return {**STRENGTHS[strength], **method_defaults(method, strength)}


def _eps_steps(eps: float | None, steps: int | None, attack: dict) -> tuple[float, int]:
    """``eps`` and ``steps``, each None taken from :func:`_preset` (and ``eps`` from the perceptual
    budget's ball when the budget is on), as `ppjax protect` takes them."""
    from ppjax.protect.config import budget_of, method_defaults

    strength, method = attack.get("strength", "mid"), attack.get("method", "pgd")
    preset = _preset(attack)
    eps = budget_of(method, strength, attack.get("delta_e"), method_defaults(method, strength).get("eps") if eps is None else eps)[1]
    return (preset["eps"] if eps is None else eps), (preset["steps"] if steps is None else steps)


def _protector(setting: str, models, eps: float | None, steps: int | None, attack: dict | None = None):
    """(the protector of ``setting`` against ``models`` (one or an ensemble), its channel rounds);
    ``attack`` overrides `ppjax protect`'s defaults (see :data:`ATTACK_OPTIONS`) for the exact and
    social settings; ``eps`` and ``steps`` None take the strength's."""
    from ppjax import attacks
    from ppjax.protect import Protector
    from ppjax.protect.config import STRENGTHS, attack_defaults, budget_of, parse_delta_e, perceptual_of, transfer_of

    attack = {k: v for k, v in (attack or {}).items() if v is not None}
    unknown = set(attack) - set(ATTACK_OPTIONS)
    if unknown:
        raise ValueError(f"unknown attack options: {sorted(unknown)}")
    models = models if isinstance(models, (list, tuple)) else [models]
    fusion = attack.get("ensemble", "loss")
    preset = STRENGTHS[attack.get("strength", "mid")]
    # Plain PGD has no perceptual budget: its ball is the strength's ball alone.
    plain_eps = preset["eps"] if eps is None else eps
    plain_steps = PLAIN_PGD_STEPS if steps is None else steps
    eps, steps = _eps_steps(eps, steps, attack)
    if setting == "plain PGD":
        targets = [attacks.Target(m.apply, m.variables, attacks.cross_entropy(), fusion, m.spec.fixed_size) for m in models]
        plain = Protector(targets, method="pgd", eps=plain_eps, steps=plain_steps, early_stop=False, lattice_steps=0, margin=0.0, options={"step_size": 1.0})
        return plain, 0
    method = attack.get("method", "pgd")
    picked = {k: preset[k] for k in ("margin", "scales", "min_psnr")}
    picked["delta_e"] = budget_of(method, attack.get("strength", "mid"), None, None)[0]
    budgeted = parse_delta_e(attack.get("delta_e", picked["delta_e"])) is not None
    picked["mottle"] = preset["mottle"] if budgeted else "off"
    picked["focus"] = preset["focus"] if budgeted else 0.0
    lattice_steps = attack.get("lattice_steps", _preset(attack)["lattice_steps"])
    chosen = {**attack_defaults(method), **picked, **{k: v for k, v in attack.items() if k not in ("strength", "method", "look", "no_refine", "panel_margin", "lattice_steps")}}
    look = None
    if attack.get("look"):
        from ppjax.edits.looks import resolve_look

        look = resolve_look(attack["look"])
        steps = 0 if attack.get("no_refine") else steps
    transfer = transfer_of(chosen)
    shaped = [m.with_skip_gradient(transfer.skip_gradient) for m in models]
    targets = [attacks.Target(m.apply, m.variables, attacks.cross_entropy(), fusion, m.spec.fixed_size, m.has_ghost) for m in shaped]
    protector = Protector(
        targets, method=method, eps=eps, steps=steps, lattice_steps=lattice_steps, channel="exact" if setting == "exact" else "social", margin=chosen["margin"],
        transfer=transfer if transfer.active else None, min_psnr=chosen["min_psnr"] or None, look=look,
        perceptual=perceptual_of(chosen["delta_e"], chosen["mottle"], chosen["focus"]),
    )  # fmt: skip
    return protector, preset["channel_rounds"]


def prepare_models(model: str, judge: str | None, ensemble: str | None, load: Callable, *, timing: bool = False):
    """(model names, loaded models, their ONNX Runtime judges, held-out judges by name) for the
    bench's ``--model``, ``--judge`` and ``--ensemble``; ``ValueError`` for a combination that cannot
    run, :class:`ppjax.evaluate.engines.EngineError` for a judge that cannot be made."""
    from ppjax import attacks, store
    from ppjax.evaluate.engines import Engines, held_out_judges, make_engines
    from ppjax.protect.config import expand_models

    names = expand_models(model.split(","))
    if not names:
        raise ValueError("--model names no model")
    if timing and len(names) > 1:
        raise ValueError("--timing times one model; give --model a single classifier")
    if ensemble is not None and ensemble not in attacks.FUSIONS:
        raise ValueError(f"--ensemble must be one of {', '.join(attacks.FUSIONS)}")
    loaded = [load(name) for name in names]
    if ensemble not in (None, "loss") and len({m.spec.num_classes for m in loaded}) > 1:
        raise ValueError(f"--ensemble {ensemble} needs models with the same classes; {', '.join(names)} differ (use --ensemble loss)")
    judge_names = [n.strip() for n in (judge or "").split(",") if n.strip()]
    onnx_judges = [make_engines(m, name, Engines.ONNX, store.model_dir(name))["onnx"] for m, name in zip(loaded, names)]
    held_out = {name: fn for name, (_, fn) in held_out_judges(judge_names, set(names), load).items()}
    return names, loaded, onnx_judges, held_out


def _progress(setting: str, total: int, start: float, log: Callable[[str], None]) -> Callable[[int], None]:
    """A progress callback that logs about every tenth of the photos, with the time so far (the
    first line also shows how long compiling took)."""
    step, seen = max(1, total // 10), [0]

    def report(done: int) -> None:
        if done // step > seen[0] // step or (done == total and seen[0] < total):
            log(f"{setting}: {done}/{total} photos protected, {time.perf_counter() - start:.0f} s")
        seen[0] = done

    return report


def _judge(judges: dict, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, list[bool]]]:
    """Per judge name, per column, per (original, protected) uint8 pair: protected on every variant
    of the column. A judge is ``fn(x01) -> logits`` or, for an ensemble, a sequence of them (then
    protected when every member is fooled). Each variant of a photo goes through the real channel
    once, for every judge and every column it belongs to."""
    members = {name: list(j) if isinstance(j, (list, tuple)) else [j] for name, j in judges.items()}
    out = {name: {col: [] for col in COLUMNS} for name in judges}
    for a, b in pairs:
        h, w = a.shape[:2]
        fooled: dict = {}  # variant -> judge name -> fooled there
        for col, variants_of in COLUMNS.items():
            for v in variants_of(h, w):
                if v not in fooled:
                    va = apply_real(a, v)[None] / np.float32(255.0)
                    vb = apply_real(b, v)[None] / np.float32(255.0)
                    fooled[v] = {
                        name: all(int(np.argmax(fn(va)[0])) != int(np.argmax(fn(vb)[0])) for fn in fns) for name, fns in members.items()
                    }  # fmt: skip
            for name in judges:
                out[name][col].append(all(fooled[v][name] for v in variants_of(h, w)))
    return out


def run_robustness_bench(
    model,
    judge,
    photos: Sequence[Path],
    *,
    eps: float | None = None,
    steps: int | None = None,
    settings: Sequence[str] = SETTINGS,
    log: Callable[[str], None] = print,
    judges: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    attack: dict | None = None,
) -> dict:
    """Protect ``photos`` each way of ``settings`` against ``model`` (a loaded classifier, or a
    list of them: an ensemble) and judge the written files with ``judge(x01) -> logits`` (a list,
    one per member: protected when every member is fooled) through each column's real variants.
    ``attack`` overrides `ppjax protect`'s defaults (:data:`ATTACK_OPTIONS`).

    Returns ``{"rows": [{setting, images, seconds, psnr, <column>: protected share}], ...}`` with
    shares in [0, 1] and mean PSNR in dB; each row's ``per_photo`` holds the verdicts behind the
    shares (photo by photo, per column), so that a subset can be compared with another run. Unreadable photos are skipped (and logged).

    ``judges``: held-out classifiers (name -> logits), never attacked: each row also holds
    ``held_out[name][column]``, the share protected against that judge (against its own top-1 on
    the original through the same variant): how well the protection transfers.
    """
    from ppjax.protect import protect_files
    from ppjax.protect.config import PANEL_MARGIN

    panel_margin = (attack or {}).get("panel_margin")
    panel_margin = PANEL_MARGIN if panel_margin is None else panel_margin
    readable = []
    for p in photos:
        try:
            read_image(p)
            readable.append(Path(p))
        except ImageReadError as e:
            log(f"skipped: {e}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ppjax-bench-robustness-") as tmp:
        for setting in settings:
            protector, rounds = _protector(setting, model, eps, steps, attack)
            jobs = [(p, Path(tmp) / setting.replace(" ", "-") / f"{n:05d}.png") for n, p in enumerate(readable)]
            start = time.perf_counter()
            results = protect_files(protector, jobs, progress=_progress(setting, len(jobs), start, log), channel_rounds=rounds, panel_margin=panel_margin)
            seconds = time.perf_counter() - start
            written = [(r.source, r.output) for r in results if r.protected is not None]
            for r in results:
                if r.error:
                    log(f"error: {r.error}")
            seen: list[dict] = []  # each pair's visibility, measured as it is read for the judges
            verdicts_of = _judge({None: judge, **(judges or {})}, _decoded(written, seen))
            judged = verdicts_of[None]
            row = {"setting": setting, "images": len(written), "seconds": seconds}
            row["psnr"] = float(np.mean([r.psnr for r in results if r.protected is not None and np.isfinite(r.psnr)]))
            row.update({k: float(np.mean([r[k] for r in seen])) for k in (seen[0] if seen else {})})
            if seen:  # the visibility goal is per photo: the worst one
                row["blocks_seen_max"] = float(max(r["blocks_seen"] for r in seen))
                row["blocks_mottled_max"] = float(max(r["blocks_mottled"] for r in seen))
            row.update({name: float(np.mean(v)) if v else float("nan") for name, v in judged.items()})
            log(f"{setting}: " + ", ".join(f"{k} {row[k]:.1%}" for k in COLUMNS) + f", PSNR {row['psnr']:.2f} dB, {seconds:.0f} s")
            row["held_out"], row["per_photo"] = {}, {
                "source": [str(a) for a, _ in written], "psnr": [float(r.psnr) for r in results if r.protected is not None],
                "protected": judged, "held_out": {},
            }  # fmt: skip
            for name in judges or {}:
                verdicts = verdicts_of[name]
                shares = {col: float(np.mean(v)) if v else float("nan") for col, v in verdicts.items()}
                row["held_out"][name] = shares
                row["per_photo"]["held_out"][name] = verdicts
                log(f"{setting}, judged by held-out {name}: " + ", ".join(f"{k} {shares[k]:.1%}" for k in COLUMNS))
            rows.append(row)
    attack = {k: v for k, v in (attack or {}).items() if v is not None}
    eps, steps = _eps_steps(eps, steps, attack)
    return {"rows": rows, "columns": list(COLUMNS), "eps_255": eps, "steps": steps, "photos": len(readable), "judges": list(judges or {}), "attack": attack}


def _decoded(written: Sequence[tuple[Path, Path]], seen: list[dict]):
    """The (original, written) uint8 pairs, each file read once and one pair at a time (an album of
    12-megapixel photos is not held at once), appending to ``seen`` each pair's CIEDE2000 (mean,
    95th percentile, share of blocks seen at a glance: :func:`ppjax.protect.quality.colour_difference`),
    grain, colourfulness and RMS contrast before and after (see :mod:`ppjax.ops.visibility`)."""
    from ppjax.ops.visibility import visibility
    from ppjax.protect.quality import colour_difference

    for source, output in written:
        a, b = read_image(source).rgb, read_image(output).rgb
        seen.append({**visibility(a, b), **colour_difference(a, b)})
        yield a, b


def _timing_photo(source: Path, size: tuple[int, int], dst: Path) -> Path:
    """``source`` resized to ``size`` (width, height), bicubic, as PNG (an upscale for 12 MP)."""
    img = Image.fromarray(read_image(source).rgb)
    if img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    img.save(dst)
    return dst


def run_timing(model_name: str, source: Path, *, eps: float = 4.0, steps: int = 20, sizes=TIMING_SIZES, log=print, attack: dict | None = None) -> list[dict]:
    """Seconds per photo (once compiled) and peak resident memory of a child process that protects
    ``source``, resized to each of ``sizes``, with the social channel's defaults (``attack``
    overrides them, as for :func:`run_robustness_bench`)."""
    attack = {k: v for k, v in (attack or {}).items() if v is not None}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ppjax-bench-timing-") as tmp:
        for w, h in sizes:
            photo = _timing_photo(source, (w, h), Path(tmp) / f"{w}x{h}.png")
            cmd = [sys.executable, "-m", "ppjax.bench.robustness", model_name, str(photo), str(Path(tmp) / "out"), str(eps), str(steps), json.dumps(attack)]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if done.returncode != 0:
                raise RuntimeError(f"timing child failed at {w}x{h}: {done.stderr.strip()[-2000:]}")
            row = {"width": w, "height": h, **json.loads(done.stdout.strip().splitlines()[-1])}
            log(f"{w}x{h}: {row['seconds']:.1f} s per photo once compiled ({row['first_seconds']:.1f} s the first time), peak RSS {row['peak_rss_gb']:.2f} GB")
            rows.append(row)
    return rows


def _peak_rss_kb() -> int:
    """This process's peak resident memory in kB: VmHWM, which starts afresh at exec. (getrusage's
    ru_maxrss does not: Linux carries it over from the parent through fork and exec, so a child of
    a 4 GB parent reports at least 4 GB.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere: kB on Linux, the best there is


def _timing_child(model_name: str, photo: str, out_dir: str, eps: float, steps: int, attack: dict | None = None) -> dict:
    """Protect ``photo`` twice in this process (compile, then timed); peak RSS of the process."""
    from ppjax import store
    from ppjax.protect import protect_files

    model = store.load_model(model_name)
    protector, _ = _protector("social", model, eps, steps, attack)
    job = [(Path(photo), Path(out_dir) / "timed.png")]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        (result,) = protect_files(protector, job, overwrite=True)
        times.append(time.perf_counter() - start)
        if result.error:
            raise RuntimeError(result.error)
    return {"first_seconds": times[0], "seconds": times[1], "peak_rss_gb": _peak_rss_kb() / 1024**2,
            "protected": bool(result.protected), "variants_protected": result.variants_protected, "variants": result.variants}  # fmt: skip


if __name__ == "__main__":  # the timing child: MODEL PHOTO OUT_DIR EPS STEPS [ATTACK_JSON]
    name, photo, out_dir, eps_arg, steps_arg = sys.argv[1:6]
    options = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    print(json.dumps(_timing_child(name, photo, out_dir, float(eps_arg), int(steps_arg), options)))
