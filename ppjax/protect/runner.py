"""One protection run from a :class:`~ppjax.protect.config.ProtectConfig`: targets and terms from
the store's models, a :class:`~ppjax.protect.protector.Protector`, and the files written.

The run never touches process-global JAX state (such as the persistent compilation cache); that is
the caller's choice (`ppjax protect` makes it for its one-shot process).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ppjax import attacks
from ppjax.io.images import iter_image_files
from ppjax.protect.config import ObjectiveKind, ProtectConfig
from ppjax.protect.files import ProtectResult, protect_files
from ppjax.protect.protector import Protector

__all__ = ["ProtectSummary", "plan_jobs", "build_protector", "run"]


@dataclass(frozen=True)
class ProtectSummary:
    results: tuple[ProtectResult, ...]
    seconds: float

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
            row = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(r).items()}
            row["unprotected_variants"] = list(r.unprotected_variants)
            images.append(row)
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
            "failed": len(self.failed),
            "seconds": self.seconds,
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
        text += f"; {self.skipped} skipped (output exists)" if self.skipped else ""
        return text + (f"; {len(failed)} failed" if failed else "")


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def plan_jobs(config: ProtectConfig) -> list:
    """(input, output) pairs: each image under the inputs, written under ``out_dir`` at its
    relative path with the output format's suffix."""
    return [(f, (config.out_dir / rel).with_suffix(config.format.suffix)) for f, rel in iter_image_files(config.inputs)]


def build_protector(config: ProtectConfig, load: Callable[[str], object]) -> Protector:
    """The protector ``config`` describes; ``load(name)`` returns an installed model by name."""
    targets = []
    for name in config.models:
        m = load(name)
        if config.objective is ObjectiveKind.SENSITIVE:
            obj = attacks.away_from_group(sorted(m.sensitive), m.spec.num_classes)
        else:
            obj = attacks.margin() if config.objective is ObjectiveKind.MARGIN else attacks.cross_entropy()
        targets.append(attacks.Target(m.apply, m.variables, obj))
    terms = []
    if config.appeal > 0:
        nima = load("nima")
        terms.append(attacks.appeal(nima.apply, nima.variables, config.appeal))
    if config.penalty is not None:
        terms.append(attacks.perceptual(config.penalty.value, config.penalty_weight))
    return Protector(
        targets, method=config.method.value, eps=config.eps, steps=config.steps, early_stop=config.early_stop, terms=terms,
        channel=config.channel.value, channel_draws=config.channel_draws,
    )  # fmt: skip


def run(
    config: ProtectConfig,
    load: Callable[[str], object],
    *,
    progress: Callable[[int], None] | None = None,
    jobs=None,
    protector: Protector | None = None,
) -> ProtectSummary:
    """Protect every image of ``config``; ``progress(n)`` is called with the number done so far.
    ``jobs`` and ``protector`` default to :func:`plan_jobs` and :func:`build_protector`'s."""
    jobs = plan_jobs(config) if jobs is None else jobs
    protector = build_protector(config, load) if protector is None else protector
    start = time.perf_counter()
    results = protect_files(
        protector, jobs, seed=config.seed, max_batch=config.batch_size, jpeg_quality=config.jpeg_quality,
        jpeg_rounds=config.jpeg_rounds, overwrite=config.overwrite, progress=progress, channel_rounds=config.channel_rounds,
    )  # fmt: skip
    return ProtectSummary(tuple(results), time.perf_counter() - start)
