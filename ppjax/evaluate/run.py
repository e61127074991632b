"""One evaluation report for a set of protected images, computed by up to two independent engines.

Originals and protected images come paired (:mod:`ppjax.evaluate.pairing`). The JAX
engine runs the Flax port; the ONNX engine runs the graph exported from the original PyTorch model
with ONNX Runtime. Both read the same decoded bytes. With ``jpeg_quality`` the protected images are
first re-encoded as JPEG, as a sharing platform would.

Measures (per engine): top-1 and top-5 accuracy before and after, and the protection rate: the
share of images the model classified correctly before whose top-1 changed (MediaEval 2019). For
Places365, also the share of protected images still predicted inside the 60 sensitive
categories. Per pair and on average: PSNR, SSIM, CIEDE2000 and how the change shows (grain,
colourfulness and RMS contrast before and after; :mod:`ppjax.ops.visibility`). Without labels, each engine's prediction on the original serves as the label.

With ``channel="social"`` each pair is also passed through the real channel's panel
(:func:`ppjax.ops.channel.panel` on Pillow, the same variants ``ppjax protect`` verifies on), and
each engine says per variant whether the protected image's top-1 differs from the original's
through the same variant; so a run made by any tool is judged on the same variants.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ppjax.evaluate.pairing import Pair, jpeg_roundtrip
from ppjax.evaluate.report import Appeal, ChannelStats, EngineStats, ImageQuality, ImageRecord, QualityStats, Report, Skipped, Verdict
from ppjax.io import ImageReadError, read_image
from ppjax.io.real_channel import apply_real_panel
from ppjax.models import Model
from ppjax.models.nima import score_moments
from ppjax.ops.channel import panel
from ppjax.ops.visibility import visibility
from ppjax.protect.quality import image_quality

__all__ = ["evaluate"]


def _topk(logits: np.ndarray, k: int = 5) -> list[int]:
    return [int(i) for i in np.argsort(-logits)[:k]]


def evaluate(
    model: Model,
    pairs: list[Pair],
    *,
    engines: dict[str, Callable[[np.ndarray], np.ndarray]],
    labels: dict[str, int] | None = None,
    jpeg_quality: int | None = None,
    nima: Model | None = None,
    progress: Callable[[int], None] | None = None,
    channel: str = "exact",
    judges: dict[str, tuple[Model, Callable[[np.ndarray], np.ndarray]]] | None = None,
    edits: dict[str, str] | None = None,
) -> Report:
    """The :class:`~ppjax.evaluate.report.Report` over ``pairs``.

    ``engines`` maps an engine name to ``logits(x01 (N, H, W, 3)) -> (N, C)``; ``nima`` (a loaded
    NIMA) adds appeal before and after. Pairs whose images cannot be read, whose sizes differ, or
    that lack a label when ``labels`` is given are listed under ``skipped`` with the reason.

    ``judges``: held-out models (name -> (model, logits)), classifiers the protection was not made
    against; each is reported as an engine ``judge:NAME``, always against its own top-1 on the
    original (its classes need not be ``model``'s). ``edits``: pair key -> the edit an edit method
    made, in words (shown beside the pair).
    """
    attacked = list(engines)
    models = {name: model for name in engines}
    engines = dict(engines)
    for name, (judge_model, logits_fn) in (judges or {}).items():
        engines[f"judge:{name}"] = logits_fn
        models[f"judge:{name}"] = judge_model
    images, skipped = [], []
    nima_scores = nima.compiled(lambda probs: score_moments(probs)[0]) if nima is not None else None
    for i, pair in enumerate(pairs):
        try:
            a, b = read_image(pair.original).rgb, read_image(pair.protected).rgb
        except ImageReadError as e:
            skipped.append(Skipped(pair.key, str(e)))
            continue
        finally:
            if progress:
                progress(i + 1)
        if a.shape != b.shape:
            skipped.append(Skipped(pair.key, f"sizes differ: original {a.shape[1]}x{a.shape[0]}, protected {b.shape[1]}x{b.shape[0]}"))
            continue
        if labels is not None and pair.key not in labels:
            skipped.append(Skipped(pair.key, "no label for this image"))
            continue
        try:
            record = _record(models, pair, a, b, engines, labels, jpeg_quality, nima_scores, edits)
            if channel != "exact":
                record = _through_channel(record, a, b, engines, channel)
            images.append(record)
        except Exception as e:  # noqa: BLE001 - a size an engine cannot take: this pair only
            skipped.append(Skipped(pair.key, f"cannot be evaluated at {a.shape[1]}x{a.shape[0]} pixels ({type(e).__name__}: {e})"))
    report = _summarise(model, images, skipped, attacked, labels is not None, jpeg_quality)
    if judges:
        stats = {**report.engines, **{name: _engine_stats(models[name], images, name, False) for name in engines if name not in attacked}}
        report = dataclasses.replace(report, engines=stats)
    if channel == "exact":
        return report
    return dataclasses.replace(report, channel=channel, channel_stats={name: _channel_stats(images, name) for name in engines})


def _through_channel(record: ImageRecord, a: np.ndarray, b: np.ndarray, engines, channel: str) -> ImageRecord:
    """``record`` with each engine's per-variant verdict through the real channel's panel."""
    variants = panel(channel, *a.shape[:2])
    seen_a, seen_b = apply_real_panel(a, variants), apply_real_panel(b, variants)
    flags = {}
    for name, logits_fn in engines.items():
        fooled = []
        for va, vb in zip(seen_a, seen_b):
            lg = np.asarray(logits_fn(np.stack([va, vb]).astype(np.float32) / 255.0))
            fooled.append(bool(np.argmax(lg[0]) != np.argmax(lg[1])))
        flags[name] = tuple(fooled)
    return dataclasses.replace(record, variants=tuple(v.label() for v in variants), channel=flags)


def _channel_stats(images: list[ImageRecord], name: str) -> ChannelStats:
    rows = [im for im in images if im.channel is not None]
    per_variant: dict[str, list[bool]] = {}
    for im in rows:
        for v, ok in zip(im.variants, im.channel[name]):
            per_variant.setdefault(v, []).append(ok)
    return ChannelStats(
        images_protected=_mean(all(im.channel[name]) for im in rows),
        variants_protected=_mean(ok for im in rows for ok in im.channel[name]),
        per_variant={v: _mean(oks) for v, oks in per_variant.items()},
    )


def _record(models, pair, a, b, engines, labels, jpeg_quality, nima_scores, edits) -> ImageRecord:
    """One pair's quality, each engine's verdict (class names from ``models[engine]``) and its appeal."""
    if jpeg_quality is not None:
        b = jpeg_roundtrip(b, jpeg_quality)
    x = np.stack([a, b]).astype(np.float32) / 255.0
    q = image_quality(a, b)  # one program for every size: an album of many sizes compiles none per photo
    q.update(visibility(a, b))
    verdicts = {}
    for name, logits_fn in engines.items():
        lg = np.asarray(logits_fn(x))
        before, after = _topk(lg[0]), _topk(lg[1])
        verdicts[name] = Verdict(before, after, models[name].labels[before[0]], models[name].labels[after[0]])
    score = tuple(float(s) for s in np.asarray(nima_scores(x))) if nima_scores is not None else None
    label = labels[pair.key] if labels is not None else None
    edit = edits.get(pair.key) if edits else None
    return ImageRecord(pair.key, str(pair.original), str(pair.protected), ImageQuality(**q), verdicts, label=label, nima=score, edit=edit)


def _engine_stats(model: Model, images: list[ImageRecord], name: str, labelled: bool) -> EngineStats:
    rows = [im.engines[name] for im in images]
    truth = [im.label if labelled else r.before_top1 for im, r in zip(images, rows)]
    correct_before = [r.before_top1 == t for r, t in zip(rows, truth)]
    return EngineStats(
        top1_before=_mean(correct_before),
        top1_after=_mean(r.after_top1 == t for r, t in zip(rows, truth)),
        top5_before=_mean(t in r.before_top5 for r, t in zip(rows, truth)),
        top5_after=_mean(t in r.after_top5 for r, t in zip(rows, truth)),
        protection_rate=_mean(r.after_top1 != t for r, t, c in zip(rows, truth, correct_before) if c),
        n_correct_before=int(sum(correct_before)),
        sensitive_after=_mean(r.after_top1 in model.sensitive for r in rows) if model.sensitive else None,
    )


def _summarise(model: Model, images: list[ImageRecord], skipped: list[Skipped], engines: list[str], labelled: bool, jpeg_quality) -> Report:
    agreement = None
    if len(engines) == 2:
        a, b = engines
        agreement = _mean(im.engines[a].after_top1 == im.engines[b].after_top1 for im in images)
    quality = QualityStats(
        psnr_mean=_mean(im.quality.psnr for im in images if im.quality.psnr is not None),
        n_unchanged=sum(im.quality.linf_255 == 0 for im in images),
        ssim_mean=_mean(im.quality.ssim for im in images if im.quality.ssim is not None),
        ciede2000_mean=_mean(im.quality.ciede2000 for im in images),
        linf_max_255=max((im.quality.linf_255 for im in images), default=None),
        ciede2000_p95_mean=_mean(im.quality.ciede2000_p95 for im in images),
        blocks_seen_mean=_mean(im.quality.blocks_seen for im in images),
        blocks_seen_max=max((im.quality.blocks_seen for im in images), default=None),
        visibility_counts=_visibility_counts(images),
        mottle_p95_mean=_mean(im.quality.mottle_p95 for im in images),
        blocks_mottled_mean=_mean(im.quality.blocks_mottled for im in images),
        blocks_mottled_max=max((im.quality.blocks_mottled for im in images if im.quality.blocks_mottled is not None), default=None),
        grain_mean_255=_mean(im.quality.grain_255 for im in images),
        colourfulness_before_mean=_mean(im.quality.colourfulness_before for im in images),
        colourfulness_after_mean=_mean(im.quality.colourfulness_after for im in images),
        rms_contrast_before_mean=_mean(im.quality.rms_contrast_before for im in images),
        rms_contrast_after_mean=_mean(im.quality.rms_contrast_after for im in images),
    )
    appeal = None
    if images and images[0].nima is not None:
        appeal = Appeal(_mean(im.nima[0] for im in images), _mean(im.nima[1] for im in images))
    return Report(
        model=model.spec.name, labels="given" if labelled else "model predictions on the originals", jpeg_quality=jpeg_quality,
        engines={name: _engine_stats(model, images, name, labelled) for name in engines}, quality=quality, images=images,
        skipped=skipped, agreement_top1=agreement, appeal=appeal,
    )  # fmt: skip


def _visibility_counts(images: list[ImageRecord]) -> dict[str, int] | None:
    """How many photos are "not visible side by side", "visible on close look" and "visible"."""
    from ppjax.protect.quality import visibility_words

    if not images:
        return None
    counts = dict.fromkeys(("not visible side by side", "visible on close look", "visible"), 0)
    for im in images:
        counts[visibility_words(im.quality.ciede2000_p95, im.quality.blocks_seen, im.quality.blocks_mottled or 0.0)] += 1
    return counts


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else None
