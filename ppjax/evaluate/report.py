"""The evaluation report as typed values, and its renderings: JSON (:meth:`Report.to_json`, the
schema ``ppjax evaluate --json`` writes) and Markdown (:func:`markdown_summary`; the HTML page is
:mod:`ppjax.evaluate.html`). Rates are shares in [0, 1]; None where nothing was measured."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = [
    "Verdict", "ImageQuality", "ImageRecord", "EngineStats", "ChannelStats", "QualityStats", "Appeal", "Skipped", "Report",
    "markdown_summary",
]  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """One engine's top-5 class indices before and after protection, and the top-1 names."""

    before_top5: list[int]
    after_top5: list[int]
    before_label: str
    after_label: str

    @property
    def before_top1(self) -> int:
        return self.before_top5[0]

    @property
    def after_top1(self) -> int:
        return self.after_top5[0]

    def to_json(self) -> dict:
        return {
            "before_top5": self.before_top5, "after_top5": self.after_top5, "before_top1": self.before_top1,
            "after_top1": self.after_top1, "before_label": self.before_label, "after_label": self.after_label,
        }  # fmt: skip


@dataclass(frozen=True)
class ImageQuality:
    """PSNR in dB (None for an unchanged image: infinite, which JSON cannot hold), SSIM (None for
    images under 11x11, too small for its window), mean CIEDE2000, the largest change in 1/255;
    how the change shows (:mod:`ppjax.ops.visibility`): grain in 1/255, colourfulness (Hasler and
    Suesstrunk) and RMS contrast of luma in [0, 1], each before and after."""

    psnr: float | None
    ssim: float | None
    ciede2000: float
    linf_255: float
    #: The 95th percentile of CIEDE2000 over pixels, and the share (0..1) of 16x16 blocks whose mean
    #: CIEDE2000 is over 2, seen at a glance (:func:`ppjax.protect.quality.colour_difference`).
    ciede2000_p95: float | None = None
    blocks_seen: float | None = None
    #: Mottle on smooth areas (:func:`ppjax.protect.quality.mottle`): the low-passed luminance
    #: contrast's 95th percentile (a fraction), the share of smooth blocks over 2%, the share of
    #: pixels that are smooth.
    mottle_p95: float | None = None
    blocks_mottled: float | None = None
    smooth: float | None = None
    grain_255: float | None = None
    colourfulness_before: float | None = None
    colourfulness_after: float | None = None
    rms_contrast_before: float | None = None
    rms_contrast_after: float | None = None

    def __post_init__(self):
        for name in ("psnr", "ssim"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                object.__setattr__(self, name, None)


@dataclass(frozen=True)
class ImageRecord:
    key: str
    original: str
    protected: str
    quality: ImageQuality
    engines: dict[str, Verdict]
    label: int | None = None
    nima: tuple[float, float] | None = None  # mean score before, after
    #: The edit an edit method made, in words (from the protected folder's ppjax manifest).
    edit: str | None = None
    #: ``--channel social``: the panel's variant labels, and per engine whether the image is
    #: protected on each (top-1 through the variant differs from the original's through it).
    variants: tuple[str, ...] = ()
    channel: dict[str, tuple[bool, ...]] | None = None

    def to_json(self) -> dict:
        out = {
            "key": self.key, "original": self.original, "protected": self.protected, "quality": vars(self.quality).copy(),
            "engines": {name: v.to_json() for name, v in self.engines.items()},
        }  # fmt: skip
        if self.nima is not None:
            out["nima"] = {"before": self.nima[0], "after": self.nima[1]}
        if self.edit is not None:
            out["edit"] = self.edit
        if self.channel is not None:
            out["channel"] = {name: dict(zip(self.variants, map(bool, flags))) for name, flags in self.channel.items()}
        out["label"] = self.label
        return out


@dataclass(frozen=True)
class EngineStats:
    """Accuracy before and after, and the protection rate: the share of images classified correctly
    before whose top-1 changed (MediaEval 2019); for Places365, the share still sensitive after."""

    top1_before: float | None
    top1_after: float | None
    top5_before: float | None
    top5_after: float | None
    protection_rate: float | None
    n_correct_before: int
    sensitive_after: float | None = None

    def to_json(self) -> dict:
        out = dict(vars(self))
        if self.sensitive_after is None:
            del out["sensitive_after"]
        return out


@dataclass(frozen=True)
class ChannelStats:
    """One engine's verdict through the real channel's panel: the share of images protected on
    every variant, the share of (image, variant) pairs protected, and the share per variant."""

    images_protected: float | None
    variants_protected: float | None
    per_variant: dict[str, float]

    def to_json(self) -> dict:
        return dict(vars(self))


@dataclass(frozen=True)
class QualityStats:
    psnr_mean: float | None  # over changed images
    n_unchanged: int
    ssim_mean: float | None
    ciede2000_mean: float | None
    linf_max_255: float | None
    ciede2000_p95_mean: float | None = None
    blocks_seen_mean: float | None = None
    #: The largest share of blocks seen at a glance in any one photo, and how many photos are
    #: "not visible side by side", "visible on close look" and "visible".
    blocks_seen_max: float | None = None
    visibility_counts: dict | None = None
    mottle_p95_mean: float | None = None
    blocks_mottled_mean: float | None = None
    blocks_mottled_max: float | None = None
    grain_mean_255: float | None = None
    colourfulness_before_mean: float | None = None
    colourfulness_after_mean: float | None = None
    rms_contrast_before_mean: float | None = None
    rms_contrast_after_mean: float | None = None


@dataclass(frozen=True)
class Appeal:
    nima_before_mean: float | None
    nima_after_mean: float | None


@dataclass(frozen=True)
class Skipped:
    key: str
    reason: str


@dataclass(frozen=True)
class Report:
    model: str
    labels: str  # "given" or "model predictions on the originals"
    jpeg_quality: int | None
    engines: dict[str, EngineStats]
    quality: QualityStats
    images: list[ImageRecord]
    skipped: list[Skipped]
    agreement_top1: float | None = None  # with two engines: the share whose protected top-1 agree
    appeal: Appeal | None = None
    unpaired: dict[str, list[str]] = field(default_factory=lambda: {"originals": [], "protected": []})
    channel: str = "exact"
    channel_stats: dict[str, ChannelStats] | None = None

    @property
    def n(self) -> int:
        return len(self.images)

    def to_json(self) -> dict:
        out: dict = {
            "model": self.model, "n": self.n, "labels": self.labels, "jpeg_quality": self.jpeg_quality,
            "engines": {name: s.to_json() for name, s in self.engines.items()},
        }  # fmt: skip
        if self.agreement_top1 is not None:
            out["agreement_top1"] = self.agreement_top1
        out["quality"] = dict(vars(self.quality))
        if self.appeal is not None:
            out["appeal"] = dict(vars(self.appeal))
        out["channel"] = self.channel
        if self.channel_stats is not None:
            out["channel_stats"] = {name: s.to_json() for name, s in self.channel_stats.items()}
        out["images"] = [im.to_json() for im in self.images]
        out["skipped"] = [dict(vars(s)) for s in self.skipped]
        out["unpaired"] = self.unpaired
        return out


def _runs_in_litert(model: str) -> bool:
    """Whether the model's independent engine is its own TFLite file (not an ONNX graph)."""
    from ppjax.store.registry import KNOWN_MODELS

    entry = KNOWN_MODELS.get(model)
    return bool(entry and entry.runtime_file)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _fmt(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_summary(report: Report) -> str:
    """The report's headline numbers as Markdown."""
    lines = [
        f"# ppjax evaluation: {report.model}",
        "",
        f"{report.n} image pairs; labels: {report.labels}"
        + (f"; protected images re-encoded as JPEG quality {report.jpeg_quality}" if report.jpeg_quality else "")
        + (f"; {len(report.skipped)} pairs skipped" if report.skipped else ""),
        "",
        "| engine | top-1 before | top-1 after | top-5 before | top-5 after | protection rate | sensitive after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in report.engines.items():
        lines.append(
            f"| {name} | {_fmt(s.top1_before)} | {_fmt(s.top1_after)} | {_fmt(s.top5_before)} | "
            f"{_fmt(s.top5_after)} | {_fmt(s.protection_rate)} | {_fmt(s.sensitive_after)} |"
        )
    if report.channel_stats:
        lines += [
            "",
            "Through the real channel (each protected file re-encoded and resized as the panel says; protected "
            "where the top-1 differs from the original's through the same variant):",
            "",
            "| engine | images protected on every variant | image-variants protected |",
            "| --- | --- | --- |",
        ]
        for name, c in report.channel_stats.items():
            lines.append(f"| {name} | {_fmt(c.images_protected)} | {_fmt(c.variants_protected)} |")
        names = list(report.channel_stats)
        variants = list(report.channel_stats[names[0]].per_variant)
        lines += ["", "| variant | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for v in variants:
            lines.append(f"| {v} | " + " | ".join(_fmt(report.channel_stats[n].per_variant[v]) for n in names) + " |")
    if report.agreement_top1 is not None:
        runtime = "LiteRT (the model's own TFLite file)" if _runs_in_litert(report.model) else "ONNX Runtime"
        lines += ["", f"JAX and {runtime} agree on the top-1 of {_fmt(report.agreement_top1)} of the protected images."]
    q = report.quality
    lines += [
        "",
        f"Quality: PSNR {_fmt(q.psnr_mean, 2)} dB (over changed images), SSIM {_fmt(q.ssim_mean, 4)}, "
        f"CIEDE2000 {_fmt(q.ciede2000_mean, 3)}, largest change {_fmt(q.linf_max_255, 0)}/255.",
    ]
    if q.ciede2000_p95_mean is not None:
        counts = ", ".join(f"{n} {words}" for words, n in (q.visibility_counts or {}).items() if n)
        lines += [
            "",
            f"Visibility: CIEDE2000 95th percentile {_fmt(q.ciede2000_p95_mean, 2)} on average; 16x16 blocks seen at a glance "
            f"(mean CIEDE2000 over 2) {_pct(q.blocks_seen_mean)} on average, {_pct(q.blocks_seen_max)} at most; {counts}.",
        ]
    if q.mottle_p95_mean is not None:
        lines += [
            "",
            f"Mottle on smooth areas (the change's low-passed luminance contrast): 95th percentile {_pct(q.mottle_p95_mean)} on "
            f"average; smooth 16x16 blocks over 2% {_pct(q.blocks_mottled_mean)} on average, {_pct(q.blocks_mottled_max)} at most.",
        ]
    if q.grain_mean_255 is not None:
        lines += [
            "",
            f"How it shows: grain {_fmt(q.grain_mean_255, 2)}/255 (high-pass change over the flattest quarter); "
            f"colourfulness {_fmt(q.colourfulness_before_mean, 1)} before, {_fmt(q.colourfulness_after_mean, 1)} after; "
            f"RMS contrast {_fmt(q.rms_contrast_before_mean, 3)} before, {_fmt(q.rms_contrast_after_mean, 3)} after.",
        ]
    if report.appeal is not None:
        a = report.appeal
        lines += ["", f"Appeal (NIMA mean score): {_fmt(a.nima_before_mean)} before, {_fmt(a.nima_after_mean)} after."]
    for s in report.skipped:
        lines.append(f"- skipped {s.key}: {s.reason}")
    return "\n".join(lines) + "\n"
