"""A self-contained HTML page for an evaluation report: see what protection did, image by image.

Each pair is shown as original, protected and an amplified difference map (|change| scaled so the
largest change of that image is full brightness, coloured from black through purple and orange to
yellow), with each engine's prediction before and after and the quality numbers. Thumbnails are
embedded as data URIs, so the page is one file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Callable

import numpy as np
from PIL import Image

from ppjax.evaluate.report import Report
from ppjax.io import read_image

__all__ = ["render_html", "difference_map"]

THUMB = 300
_STOPS = np.array([[0, 0, 0], [80, 18, 123], [221, 73, 104], [253, 191, 60], [252, 253, 191]], np.float64)


def difference_map(original: np.ndarray, protected: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 heat map of the largest per-channel change, and the gain applied to it."""
    d = np.abs(original.astype(np.int16) - protected.astype(np.int16)).max(axis=-1).astype(np.float64)
    peak = d.max()
    if peak == 0:
        return np.zeros_like(original), 0.0
    t = d / peak * (len(_STOPS) - 1)
    i = np.minimum(t.astype(int), len(_STOPS) - 2)
    frac = (t - i)[..., None]
    rgb = _STOPS[i] * (1 - frac) + _STOPS[i + 1] * frac
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), 255.0 / peak


def _data_uri(rgb: np.ndarray, fmt: str = "JPEG") -> str:
    img = Image.fromarray(rgb)
    img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


_CSS = """
:root { --bg:#0f1115; --card:#181b22; --ink:#e8eaf0; --dim:#9aa3b2; --ok:#3ecf8e; --bad:#ff6b6b; --accent:#7aa2ff; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; background:var(--bg); color:var(--ink); }
header { padding:28px 36px 8px; }
h1 { margin:0 0 4px; font-size:26px; font-weight:650; }
.sub { color:var(--dim); }
.cards { display:flex; flex-wrap:wrap; gap:14px; padding:16px 36px 8px; }
.stat { background:var(--card); border-radius:12px; padding:14px 18px; min-width:170px; }
.stat .v { font-size:28px; font-weight:700; }
.stat .k { color:var(--dim); font-size:13px; text-transform:uppercase; letter-spacing:.04em; }
.pairs { padding:16px 36px 40px; display:grid; gap:18px; }
.pair { background:var(--card); border-radius:14px; padding:16px 18px; }
.pair h2 { margin:0 0 10px; font-size:16px; font-weight:600; display:flex; gap:10px; align-items:center; }
.badge { font-size:12px; padding:2px 9px; border-radius:99px; font-weight:600; }
.badge.ok { background:rgba(62,207,142,.15); color:var(--ok); } .badge.bad { background:rgba(255,107,107,.15); color:var(--bad); }
.imgs { display:flex; gap:12px; flex-wrap:wrap; }
figure { margin:0; } figure img { display:block; width:300px; max-width:100%; border-radius:8px; image-rendering:auto; }
figcaption { color:var(--dim); font-size:12.5px; margin-top:4px; }
table { border-collapse:collapse; margin-top:12px; font-size:14px; }
td, th { padding:4px 14px 4px 0; text-align:left; } th { color:var(--dim); font-weight:500; }
.changed { color:var(--ok); } .same { color:var(--bad); }
.q { color:var(--dim); margin-top:8px; font-size:13.5px; }
.edit { margin-top:4px; font-size:13.5px; }
"""


def render_html(report: Report, *, jpeg_roundtrip: Callable[[np.ndarray, int], np.ndarray] | None = None, limit: int = 100) -> str:
    """The page for ``report`` (as returned by :func:`ppjax.evaluate.evaluate`); reads the image files.

    At most ``limit`` pairs are drawn (all numbers stay in the JSON report). Pairs whose protection
    failed come first.
    """
    engines = list(report.engines)
    cards = []
    for name, s in report.engines.items():
        cards.append((f"protection rate · {name}", _fmt(s.protection_rate, ".0%")))
        cards.append((f"top-1 · {name}", f"{_fmt(s.top1_before, '.0%')} → {_fmt(s.top1_after, '.0%')}"))
        if s.sensitive_after is not None:
            cards.append((f"still sensitive · {name}", _fmt(s.sensitive_after, ".0%")))
    if len(engines) == 2:
        cards.append(("JAX ↔ ONNX agreement", _fmt(report.agreement_top1, ".0%")))
    q = report.quality
    cards += [("PSNR", f"{_fmt(q.psnr_mean, '.1f')} dB"), ("SSIM", _fmt(q.ssim_mean, ".4f")), ("CIEDE2000", _fmt(q.ciede2000_mean, ".2f"))]
    if q.grain_mean_255 is not None:
        cards.append(("grain (1/255)", _fmt(q.grain_mean_255, ".2f")))
        cards.append(("colourfulness", f"{_fmt(q.colourfulness_before_mean, '.1f')} → {_fmt(q.colourfulness_after_mean, '.1f')}"))
    if report.appeal is not None:
        a = report.appeal
        cards.append(("NIMA appeal", f"{_fmt(a.nima_before_mean, '.2f')} → {_fmt(a.nima_after_mean, '.2f')}"))

    def protected_ok(im) -> bool:
        r = im.engines[engines[0]]
        truth = im.label if im.label is not None else r.before_top1
        return r.after_top1 != truth

    images = sorted(report.images, key=protected_ok)[:limit]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>ppjax evaluation · {html.escape(report.model)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>Protection report · {html.escape(report.model)}</h1>",
        f"<div class='sub'>{report.n} image pairs · labels: {html.escape(report.labels)}"
        + (f" · protected images re-encoded as JPEG q{report.jpeg_quality}" if report.jpeg_quality else "")
        + (f" · showing {len(images)}" if len(images) < report.n else "")
        + "</div></header><section class='cards'>",
        *(f"<div class='stat'><div class='v'>{html.escape(v)}</div><div class='k'>{html.escape(k)}</div></div>" for k, v in cards),
        "</section><section class='pairs'>",
    ]
    for im in images:
        a, b = read_image(im.original).rgb, read_image(im.protected).rgb
        if report.jpeg_quality and jpeg_roundtrip is not None:
            b = jpeg_roundtrip(b, report.jpeg_quality)
        diff, gain = difference_map(a, b)
        ok = protected_ok(im)
        rows = []
        for name in engines:
            r = im.engines[name]
            cls = "changed" if r.after_top1 != r.before_top1 else "same"
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(r.before_label)}</td>"
                f"<td class='{cls}'>{html.escape(r.after_label)}</td></tr>"
            )
        qi = im.quality
        nima = f" · NIMA {im.nima[0]:.2f} → {im.nima[1]:.2f}" if im.nima is not None else ""
        if qi.grain_255 is not None:
            nima += f" · grain {qi.grain_255:.2f}/255 · colourfulness {qi.colourfulness_before:.1f} → {qi.colourfulness_after:.1f}"
        edit = f"<div class='edit'>edit: {html.escape(im.edit)}</div>" if im.edit else ""
        parts.append(
            f"<article class='pair'><h2>{html.escape(im.key)}"
            f"<span class='badge {'ok' if ok else 'bad'}'>{'protected' if ok else 'not protected'}</span></h2>"
            "<div class='imgs'>"
            f"<figure><img alt='original' src='{_data_uri(a)}'><figcaption>original</figcaption></figure>"
            f"<figure><img alt='protected' src='{_data_uri(b)}'><figcaption>protected</figcaption></figure>"
            f"<figure><img alt='difference' src='{_data_uri(diff, 'PNG')}'><figcaption>"
            + (f"difference ×{gain:.3g} (brightest = {255 / gain:.0f}/255)" if gain else "no change")
            + "</figcaption></figure></div>"
            "<table><tr><th>engine</th><th>before</th><th>after</th></tr>" + "".join(rows) + "</table>"
            f"<div class='q'>PSNR {_fmt(qi.psnr, '.1f')} dB · SSIM {_fmt(qi.ssim, '.4f')} · CIEDE2000 {qi.ciede2000:.2f}"
            f" · max change {qi.linf_255:.0f}/255{html.escape(nima)}</div>{edit}</article>"
        )
    parts.append("</section></body></html>")
    return "".join(parts)
