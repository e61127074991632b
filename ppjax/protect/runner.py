"""One protection run from a :class:`~ppjax.protect.config.ProtectConfig`: targets and terms from
the store's models, a :class:`~ppjax.protect.protector.Protector`, and the files written.

The run never touches process-global JAX state (such as the persistent compilation cache); that is
the caller's choice (`ppjax protect` makes it for its one-shot process).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import jax
import numpy as np

import ppjax
from ppjax import attacks
from ppjax.io.images import check_output_folder, iter_image_files
from ppjax.io.naming import plan_names, private_name
from ppjax.protect.config import Backend, ObjectiveKind, ProtectConfig
from ppjax.protect.devices import select_devices
from ppjax.protect.files import ProtectResult, protect_files
from ppjax.protect.manifest import Manifest, variables_sha256
from ppjax.store.programs import ProgramCache
from ppjax.protect.protector import Protector
from ppjax.protect.shards import resolve_shard, select_shard
from ppjax.store.private_key import local_key

__all__ = ["ProtectSummary", "Plan", "plan", "plan_jobs", "build_protector", "program_identity", "run_settings", "run"]


@dataclass(frozen=True)
class ProtectSummary:
    results: tuple[ProtectResult, ...]
    seconds: float
    #: (number of shards, this shard's index): which part of the inputs this run took.
    shard: tuple[int, int] = (1, 0)
    devices: int = 1

    @property
    def written(self) -> list[ProtectResult]:
        return [r for r in self.results if r.protected is not None]

    @property
    def failed(self) -> list[ProtectResult]:
        return [r for r in self.results if r.error]

    @property
    def skipped(self) -> int:
        return sum(r.skipped is not None for r in self.results)

    def to_json(self) -> dict:
        """The summary and every image's result, as plain JSON values (paths as strings)."""
        written = self.written
        images = []
        for r in self.results:
            images.append(r.to_json())
        judged = [r for r in written if r.variants]
        return {
            "images": len(self.results),
            "written": len(written),
            "protected": sum(bool(r.protected) for r in written),
            "variants_protected": sum(r.variants_protected for r in judged) if judged else None,
            "variants": sum(r.variants for r in judged) if judged else None,
            "mean_psnr_db": _mean([r.psnr for r in written]),
            "mean_ssim": _mean([r.ssim for r in written if r.ssim is not None]),
            "skipped": self.skipped,
            "renamed": sum(r.renamed_from is not None for r in self.results),
            "failed": len(self.failed),
            "seconds": self.seconds,
            "shard": {"count": self.shard[0], "index": self.shard[1]},
            "devices": self.devices,
            "results": images,
        }

    def line(self) -> str:
        """The one-line summary: protected share as written, mean PSNR (dB) and SSIM, time."""
        written, failed = self.written, self.failed
        text = f"protected {sum(r.protected for r in written)}/{len(written)} images as written"
        judged = [r for r in written if r.variants]
        if judged:
            text = (
                f"protected {sum(r.protected for r in written)}/{len(written)} images on every channel variant "
                f"({sum(r.variants_protected for r in judged)}/{sum(r.variants for r in judged)} image-variants)"
            )
        if written:
            psnr = [r.psnr for r in written if np.isfinite(r.psnr)]
            ssim = [r.ssim for r in written if r.ssim is not None]
            text += f", mean PSNR {np.mean(psnr):.2f} dB" if psnr else ", mean PSNR - (no image changed)"
            text += f", mean SSIM {np.mean(ssim):.4f}" if ssim else ", mean SSIM - (images under 11x11)"
        text += f", {self.seconds:.1f} s"
        done = sum(bool(r.skipped and r.skipped.startswith("done")) for r in self.results)
        text += f"; {done} already done" if done else ""
        text += f"; {self.skipped - done} skipped (see above)" if self.skipped - done else ""
        renamed = sum(r.renamed_from is not None for r in self.results)
        text += f"; {renamed} renamed, their names taken by another input (see above)" if renamed else ""
        text += f"; shard {self.shard[1]} of {self.shard[0]}" if self.shard[0] > 1 else ""
        return text + (f"; {len(failed)} failed" if failed else "")


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


@dataclass(frozen=True)
class Plan:
    """A run's work: ``jobs``, this process's (input, output) pairs, and ``renamed``, for every
    input whose output has another name than its own (see :mod:`ppjax.io.naming`), the output
    path it would have had; ``left_out``, the files under the input folders that are not photos
    ppjax reads (by suffix), in every shard's plan."""

    jobs: list
    renamed: dict
    left_out: tuple = ()


def plan(config: ProtectConfig, environ=None) -> Plan:
    """Each image under the inputs, written under ``out_dir`` at its relative path with the output
    format's suffix, under a name no other input's output has (see :mod:`ppjax.io.naming`); then
    only this process's shard of them (the config's ``num_shards``/``shard_index``, else the
    scheduler's environment ``environ``). Names are planned over every input before the split, so
    that every shard agrees on them. An output folder that is one of the input folders is refused
    (``ValueError``) before anything is planned."""
    check_output_folder(config.inputs, config.out_dir)
    left_out: list = []
    wanted = [(f, Path(rel).with_suffix(config.format.suffix_for(f))) for f, rel in iter_image_files(config.inputs, skip=config.out_dir, left_out=left_out)]
    named, renamed = plan_names(wanted)
    jobs = [(f, config.out_dir / rel) for f, rel in named]
    count, index, _ = resolve_shard(config.num_shards, config.shard_index, environ)
    mine = select_shard(jobs, config.out_dir, count, index)  # by the plain names: the same on every machine
    chosen = {f for f, _ in mine}
    if config.private_names:
        key = local_key()
        private, _ = plan_names([(f, private_name(out.relative_to(config.out_dir), key)) for f, out in mine])
        return Plan([(f, config.out_dir / rel) for f, rel in private], {}, tuple(left_out))
    return Plan(mine, {f: config.out_dir / rel for f, rel in renamed.items() if f in chosen}, tuple(left_out))


def plan_jobs(config: ProtectConfig, environ=None) -> list:
    """The (input, output) pairs of :func:`plan`."""
    return plan(config, environ).jobs


def run_settings(config: ProtectConfig, protector: Protector) -> dict:
    """Everything that decides an output's bytes, for the manifest's fingerprint: the models and
    their weights' sha256, the attack and channel settings, the seed, the format, and the ppjax
    version. Not the device count or the shard, which do not change the bytes."""
    return {
        "ppjax": ppjax.__version__, "models": list(config.models), "weights_sha256": variables_sha256(protector.variables),
        "method": config.method.value, "objective": config.objective.value, "channel": config.channel.value,
        "channel_draws": config.channel_draws, "channel_rounds": config.channel_rounds,
        "panel_margin": config.panel_margin, "eps": config.eps,
        "steps": config.steps, "margin": config.margin, "diversity": config.diversity, "smoothing": config.smoothing,
        "momentum": config.momentum, "seed": config.seed, "format": config.format.value, "jpeg_quality": config.jpeg_quality,
        "jpeg_rounds": config.jpeg_rounds, "appeal": config.appeal, "penalty": config.penalty and config.penalty.value,
        "penalty_weight": config.penalty_weight, "batch_size": config.batch_size, "early_stop": config.early_stop,
        "options": dict(protector.options), "min_psnr": config.min_psnr,
        # Only when not the default, so that manifests written before the option keep their fingerprint.
        **({"ensemble": config.ensemble} if config.ensemble != "loss" else {}),
        **({"keep_metadata": True} if config.keep_metadata else {}),
        **({"lattice_steps": config.lattice_steps} if config.lattice_steps != 10 else {}),  # 10 for every run before the option
        **({"scales": config.scales} if config.scales != 1 else {}),
        **({"skip_gradient": config.skip_gradient} if config.skip_gradient != 1 else {}),
        **({"ghost": config.ghost} if config.ghost else {}),
        **({"spectrum": config.spectrum} if config.spectrum else {}),
        **({"flip": config.flip} if config.flip else {}),
        **({"delta_e": config.delta_e} if config.delta_e != "off" else {}),
        **({"mottle": config.mottle} if config.mottle != "off" else {}),
        **({"focus": config.focus} if config.focus else {}),
        **({"look": jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), config.look_params)} if config.look else {}),
    }  # fmt: skip


def program_identity(config: ProtectConfig) -> str:
    """What a protector's programs owe to ``config`` beyond its own settings and the weights'
    shapes: the models, the objective and how they join, and the terms (see
    :class:`ppjax.store.programs.ProgramCache`)."""
    return json.dumps({
        "models": list(config.models), "objective": config.objective.value, "ensemble": config.ensemble, "appeal": config.appeal,
        "penalty": config.penalty and config.penalty.value, "penalty_weight": config.penalty_weight,
    }, sort_keys=True)  # fmt: skip


def build_protector(config: ProtectConfig, load: Callable[[str], object], program_folder=None) -> Protector:
    """The protector ``config`` describes; ``load(name)`` returns an installed model by name.
    ``program_folder``: where its traced programs are kept for later runs (None: not kept)."""
    targets, classes = [], set()
    for name in config.models:
        m = load(name).with_skip_gradient(config.skip_gradient)
        classes.add(m.spec.num_classes)
        if config.ensemble in ("logits", "probs") and len(classes) > 1:
            raise ValueError(f"--ensemble {config.ensemble} needs models with the same classes; {', '.join(config.models)} differ (use --ensemble loss)")
        if config.objective is ObjectiveKind.SENSITIVE:
            obj = attacks.away_from_group(sorted(m.sensitive), m.spec.num_classes)
        else:
            obj = attacks.margin() if config.objective is ObjectiveKind.MARGIN else attacks.cross_entropy()
        targets.append(attacks.Target(m.apply, m.variables, obj, config.ensemble, m.spec.fixed_size, m.has_ghost))
    terms = []
    if config.appeal > 0:
        nima = load("nima")
        terms.append(attacks.appeal(nima.apply, nima.variables, config.appeal))
    if config.penalty is not None:
        terms.append(attacks.perceptual(config.penalty.value, config.penalty_weight))
    return Protector(
        targets, method=config.method.value, eps=config.eps, steps=config.steps, lattice_steps=config.lattice_steps, early_stop=config.early_stop, terms=terms,
        channel=config.channel.value, channel_draws=config.channel_draws, margin=config.margin,
        transfer=config.transfer if config.transfer.active else None, min_psnr=config.min_psnr or None, perceptual=config.perceptual,
        program_cache=None if program_folder is None else ProgramCache(Path(program_folder), program_identity(config)),
        look=config.look_params,
    )  # fmt: skip


def run(
    config: ProtectConfig,
    load: Callable[[str], object],
    *,
    progress: Callable[[int], None] | None = None,
    work: Plan | None = None,
    protector: Protector | None = None,
    stage: Callable[[Path, str], None] | None = None,
    on_result: Callable[[ProtectResult], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    clock=None,
    in_flight: int | None = None,
) -> ProtectSummary:
    """Protect every image of ``config``; ``progress(n)`` is called with the number done so far,
    after each photo, ``stage(source, text)`` with what a photo is doing, ``on_result(result)``
    with each photo's result as it is final; once ``cancelled()`` is true, photos not yet started
    are skipped and those in flight are not written. Each result of a renamed output says the name it would have had (``renamed_from``).
    ``clock``: a :class:`ppjax.protect.timings.StageClock` that hears each stage's seconds, and
    ``in_flight`` batches in flight per device (local backend; see :func:`ppjax.protect.protect_files`).
    ``work`` and ``protector`` default to :func:`plan` and :func:`build_protector`'s."""
    count, index, _ = resolve_shard(config.num_shards, config.shard_index)
    work = plan(config) if work is None else work
    jobs = work.jobs
    protector = build_protector(config, load) if protector is None else protector

    def noted(result: ProtectResult) -> ProtectResult:
        plain = work.renamed.get(result.source)
        return result if plain is None else replace(result, renamed_from=plain.name)

    if config.backend is Backend.RAY:
        from ppjax.protect.ray_backend import run_on_ray

        start = time.perf_counter()
        results = run_on_ray(config, jobs, protector, address=config.ray_address, workers=config.ray_workers, progress=progress)
        return ProtectSummary(tuple(map(noted, results)), time.perf_counter() - start, (count, index), 0)
    devices = select_devices(config.devices)
    # One manifest file per shard: the copies of an array job append to their own.
    manifest = Manifest(
        config.out_dir, run_settings(config, protector), name=f"shard-{index}-of-{count}" if count > 1 else None, input_names=not config.private_names,
    )  # fmt: skip
    start = time.perf_counter()
    results = protect_files(
        protector, jobs, seed=config.seed, max_batch=config.batch_size, jpeg_quality=config.jpeg_quality,
        jpeg_rounds=config.jpeg_rounds, overwrite=config.overwrite, progress=progress, channel_rounds=config.channel_rounds,
        panel_margin=config.panel_margin, manifest=manifest, devices=devices, stage=stage, keep_metadata=config.keep_metadata,
        on_result=None if on_result is None else lambda result: on_result(noted(result)), cancelled=cancelled,
        **({} if clock is None else {"clock": clock}), **({} if in_flight is None else {"in_flight": in_flight}),
    )  # fmt: skip
    return ProtectSummary(tuple(map(noted, results)), time.perf_counter() - start, (count, index), len(devices))
