"""One evaluation report for a set of protected images, computed by up to two independent engines.

Originals and protected images are paired by :func:`ppjax.labels.image_key` (file extensions may
differ; a MediaEval run's ``<runcode>_Places365_val_XXXXXXXX.jpg`` finds its original). The JAX
engine runs the Flax port; the ONNX engine runs the graph exported from the original PyTorch model
with ONNX Runtime. Both read the same decoded bytes. With ``jpeg_quality`` the protected images are
first re-encoded as JPEG, as a sharing platform would.

Measures (per engine): top-1 and top-5 accuracy before and after, and the protection rate: the
share of images the model classified correctly before whose top-1 changed (MediaEval 2019). For
Places365, also the share of protected images still predicted inside the 60 sensitive
categories. Without labels, each engine's prediction on the original serves as the label.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ppjax import metrics
from ppjax.io import IMAGE_SUFFIXES, ImageReadError, iter_image_files, read_image
from ppjax.labels import image_key
from ppjax.models import Model

__all__ = ["Pair", "PairingError", "pair_images", "open_protected", "jpeg_roundtrip", "evaluate", "markdown_summary"]


class PairingError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    key: str
    original: Path
    protected: Path


def _images_by_key(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for f, _rel in iter_image_files([folder]):
        key = image_key(f.name)
        if key in found:
            raise PairingError(f"{folder}: two images share the name {key}: {found[key].name} and {f.name}")
        found[key] = f
    return found


def pair_images(originals: Path, protected: Path) -> tuple[list[Pair], list[str], list[str]]:
    """Pairs sorted by key, plus keys found only among originals and only among protected images."""
    if not originals.is_dir():
        raise PairingError(f"{originals}: not a folder")
    a, b = _images_by_key(originals), _images_by_key(protected)
    pairs = [Pair(k, a[k], b[k]) for k in sorted(a.keys() & b.keys())]
    return pairs, sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())


class open_protected:
    """Context manager: a folder as is, or a zip's images extracted to a temporary folder.

    Only image members are extracted, each under its bare file name (no paths from the archive
    are trusted).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if self.path.is_dir():
            return self.path
        if not zipfile.is_zipfile(self.path):
            raise PairingError(f"{self.path}: neither a folder nor a zip file")
        self._tmp = tempfile.TemporaryDirectory(prefix="ppjax-run-")
        out = Path(self._tmp.name)
        with zipfile.ZipFile(self.path) as zf:
            for info in zf.infolist():
                name = Path(info.filename).name
                if info.is_dir() or name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if (out / name).exists():
                    raise PairingError(f"{self.path}: the archive holds {name} twice")
                (out / name).write_bytes(zf.read(info))
        return out

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 encoded as JPEG at ``quality`` (4:2:0, as most encoders) and decoded again."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@jax.jit
def _quality(x: jnp.ndarray, y: jnp.ndarray) -> dict[str, jnp.ndarray]:
    return {
        "psnr": metrics.psnr(x, y),
        "ssim": metrics.ssim(x, y),
        "ciede2000": metrics.ciede2000(x, y),
        "linf_255": metrics.linf_255(x, y),
    }


def _topk(logits: np.ndarray, k: int = 5) -> list[int]:
    return [int(i) for i in np.argsort(-logits, kind="stable")[:k]]


def evaluate(
    model: Model,
    pairs: list[Pair],
    *,
    engines: dict[str, Callable[[np.ndarray], np.ndarray]],
    labels: dict[str, int] | None = None,
    jpeg_quality: int | None = None,
    nima=None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """The report (see ``ppjax evaluate --help`` for its fields) over ``pairs``.

    ``engines`` maps an engine name to ``logits(x01 (N, H, W, 3)) -> (N, C)``. Pairs whose images
    cannot be read, whose sizes differ, or that lack a label when ``labels`` is given are listed
    under ``skipped`` with the reason.
    """
    images, skipped = [], []
    for i, pair in enumerate(pairs):
        try:
            a, b = read_image(pair.original).rgb, read_image(pair.protected).rgb
        except ImageReadError as e:
            skipped.append({"key": pair.key, "reason": str(e)})
            continue
        finally:
            if progress:
                progress(i + 1)
        if a.shape != b.shape:
            skipped.append({"key": pair.key, "reason": f"sizes differ: original {a.shape[1]}x{a.shape[0]}, protected {b.shape[1]}x{b.shape[0]}"})
            continue
        if labels is not None and pair.key not in labels:
            skipped.append({"key": pair.key, "reason": "no label for this image"})
            continue
        if jpeg_quality is not None:
            b = jpeg_roundtrip(b, jpeg_quality)
        x = (np.stack([a, b]).astype(np.float32) / 255.0)
        record = {"key": pair.key, "original": str(pair.original), "protected": str(pair.protected)}
        q = _quality(jnp.asarray(x[:1]), jnp.asarray(x[1:]))
        record["quality"] = {k: float(v[0]) for k, v in q.items()}
        if not np.isfinite(record["quality"]["psnr"]):
            record["quality"]["psnr"] = None  # unchanged image: infinite PSNR, which JSON cannot hold
        record["engines"] = {}
        for name, logits_fn in engines.items():
            lg = np.asarray(logits_fn(x))
            before, after = _topk(lg[0]), _topk(lg[1])
            record["engines"][name] = {"before_top5": before, "after_top5": after}
        if nima is not None:
            score = np.asarray(nima.mean_score(jnp.asarray(x)))
            record["nima"] = {"before": float(score[0]), "after": float(score[1])}
        record["label"] = labels[pair.key] if labels is not None else None
        images.append(record)
    return _summarise(model, images, skipped, list(engines), labels is not None, jpeg_quality)


def _summarise(model: Model, images: list[dict], skipped: list[dict], engines: list[str], labelled: bool, jpeg_quality) -> dict:
    report: dict = {
        "model": model.spec.name,
        "n": len(images),
        "labels": "given" if labelled else "model predictions on the originals",
        "jpeg_quality": jpeg_quality,
        "engines": {},
    }
    for name in engines:
        rows = [im["engines"][name] for im in images]
        truth = [im["label"] if labelled else r["before_top5"][0] for im, r in zip(images, rows)]
        correct_before = [r["before_top5"][0] == t for r, t in zip(rows, truth)]
        stats = {
            "top1_before": _mean(correct_before),
            "top1_after": _mean(r["after_top5"][0] == t for r, t in zip(rows, truth)),
            "top5_before": _mean(t in r["before_top5"] for r, t in zip(rows, truth)),
            "top5_after": _mean(t in r["after_top5"] for r, t in zip(rows, truth)),
            "protection_rate": _mean(r["after_top5"][0] != t for r, t, c in zip(rows, truth, correct_before) if c),
            "n_correct_before": int(sum(correct_before)),
        }
        if model.sensitive:
            stats["sensitive_after"] = _mean(r["after_top5"][0] in model.sensitive for r in rows)
        report["engines"][name] = stats
    if len(engines) == 2:
        a, b = engines
        report["agreement_top1"] = _mean(im["engines"][a]["after_top5"][0] == im["engines"][b]["after_top5"][0] for im in images)
    report["quality"] = {
        "psnr_mean": _mean(im["quality"]["psnr"] for im in images if im["quality"]["psnr"] is not None),
        "n_unchanged": sum(im["quality"]["linf_255"] == 0 for im in images),
        "ssim_mean": _mean(im["quality"]["ssim"] for im in images),
        "ciede2000_mean": _mean(im["quality"]["ciede2000"] for im in images),
        "linf_max_255": max((im["quality"]["linf_255"] for im in images), default=None),
    }
    if images and "nima" in images[0]:
        report["appeal"] = {
            "nima_before_mean": _mean(im["nima"]["before"] for im in images),
            "nima_after_mean": _mean(im["nima"]["after"] for im in images),
        }
    for im in images:
        for r in im["engines"].values():
            r["before_top1"], r["after_top1"] = r["before_top5"][0], r["after_top5"][0]
            r["before_label"], r["after_label"] = model.labels[r["before_top1"]], model.labels[r["after_top1"]]
    report["images"] = images
    report["skipped"] = skipped
    return report


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else None


def _fmt(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_summary(report: dict) -> str:
    """The report's headline numbers as Markdown."""
    lines = [
        f"# ppjax evaluation: {report['model']}",
        "",
        f"{report['n']} image pairs; labels: {report['labels']}"
        + (f"; protected images re-encoded as JPEG quality {report['jpeg_quality']}" if report["jpeg_quality"] else "")
        + (f"; {len(report['skipped'])} pairs skipped" if report["skipped"] else ""),
        "",
        "| engine | top-1 before | top-1 after | top-5 before | top-5 after | protection rate | sensitive after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in report["engines"].items():
        lines.append(
            f"| {name} | {_fmt(s['top1_before'])} | {_fmt(s['top1_after'])} | {_fmt(s['top5_before'])} | "
            f"{_fmt(s['top5_after'])} | {_fmt(s['protection_rate'])} | {_fmt(s.get('sensitive_after'))} |"
        )
    if "agreement_top1" in report:
        lines += ["", f"JAX and ONNX Runtime agree on the top-1 of {_fmt(report['agreement_top1'])} of the protected images."]
    q = report["quality"]
    lines += [
        "",
        f"Quality: PSNR {_fmt(q['psnr_mean'], 2)} dB (over changed images), SSIM {_fmt(q['ssim_mean'], 4)}, "
        f"CIEDE2000 {_fmt(q['ciede2000_mean'], 3)}, largest change {_fmt(q['linf_max_255'], 0)}/255.",
    ]
    if "appeal" in report:
        a = report["appeal"]
        lines += ["", f"Appeal (NIMA mean score): {_fmt(a['nima_before_mean'])} before, {_fmt(a['nima_after_mean'])} after."]
    for s in report["skipped"]:
        lines.append(f"- skipped {s['key']}: {s['reason']}")
    return "\n".join(lines) + "\n"
