"""Crops at 100%, before and after, at each visibility preset: what the CIEDE2000 figures mean to
an eye (`ppjax bench crops`).

Each setting protects the photos with `ppjax protect` (a child process, PNG output), then, per
photo, one window of ``crop`` x ``crop`` pixels is cut at full resolution from the original and
from every setting's output: the window where the change of the L-infinity ball alone (``--delta-e
off``, ppjax's default before the perceptual budget) is most visible, by its mean CIEDE2000, so
that the crops show the worst of what the budget was made to remove. A Markdown page with the
crops and each output's figures (mean and 95th-percentile CIEDE2000, blocks seen at a glance, the
words the page uses, PSNR, and whether it is protected) goes beside them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ppjax.io import read_image, write_image
from ppjax.protect.quality import ciede2000_pixels, colour_difference, psnr_ssim, visibility_words

__all__ = ["SETTINGS", "worst_window", "run_crops"]

#: (name, `ppjax protect` options) of each column of the page, the ball alone first.
SETTINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("eps ball alone (mid, --delta-e off)", ("--delta-e", "off")),
    ("low", ("--strength", "low")),
    ("mid (the default)", ()),
    ("high", ("--strength", "high")),
)


def worst_window(delta_e: np.ndarray, side: int) -> tuple[int, int]:
    """(top, left) of the ``side`` x ``side`` window (on a grid of half steps) with the highest
    mean of the (H, W) map ``delta_e``; (0, 0) for a map smaller than the window."""
    h, w = delta_e.shape
    if h <= side or w <= side:
        return 0, 0
    sums = np.pad(np.cumsum(np.cumsum(delta_e.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    step = max(1, side // 2)
    tops, lefts = range(0, h - side + 1, step), range(0, w - side + 1, step)
    best = max(((sums[t + side, l + side] - sums[t, l + side] - sums[t + side, l] + sums[t, l], t, l) for t in tops for l in lefts))
    return best[1], best[2]


def _protect(photos: Sequence[Path], out: Path, model: str, options: Sequence[str]) -> dict:
    """`ppjax protect` in a child process; its --json summary."""
    summary = out / "summary.json"
    cmd = [sys.executable, "-c", "import sys; from ppjax.cli import main; sys.argv[0] = 'ppjax'; main()", "protect", *map(str, photos),
           "-o", str(out / "files"), "--model", model, "--format", "png", "--json", str(summary), *options]  # fmt: skip
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not summary.exists():
        raise RuntimeError(f"ppjax protect {' '.join(options)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(summary.read_text())


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.split(" (")[0].lower()).strip("-")


def run_crops(photos: Sequence[Path], out_dir: Path, model: str, crop: int = 192, log: Callable[[str], None] = print) -> dict:
    """Protect ``photos`` at every setting of :data:`SETTINGS` against ``model``, write the crops
    into ``out_dir`` and the page ``out_dir / "README.md"``; the figures, as a dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = [Path(p) for p in photos]
    figures = {"model": model, "crop": crop, "settings": [name for name, _ in SETTINGS], "photos": []}
    with tempfile.TemporaryDirectory(prefix="ppjax-crops-") as tmp:
        results = []
        for name, options in SETTINGS:
            log(f"protecting {len(photos)} photos: {name}")
            summary = _protect(photos, Path(tmp) / _slug(name), model, options)
            results.append({Path(r["source"]).resolve(): r for r in summary["results"]})
        for photo in photos:
            original = read_image(photo).rgb
            outputs = [read_image(Path(r[photo.resolve()]["output"])).rgb for r in results]
            top, left = worst_window(ciede2000_pixels(original, outputs[0]), crop)
            window = (slice(top, top + crop), slice(left, left + crop))
            folder = out_dir / photo.stem
            folder.mkdir(exist_ok=True)
            write_image(folder / "original.png", original[window])
            row = {"photo": photo.name, "size": list(original.shape[:2]), "window": [top, left], "settings": []}
            for (name, _), result, image in zip(SETTINGS, results, outputs):
                write_image(folder / f"{_slug(name)}.png", image[window])
                colour = colour_difference(original, image)
                row["settings"].append({
                    "setting": name, "psnr": psnr_ssim(original, image)[0], **colour,
                    "words": visibility_words(colour["ciede2000_p95"], colour["blocks_seen"], colour["blocks_mottled"]),
                    "protected": result[photo.resolve()].get("protected"),
                })  # fmt: skip
            figures["photos"].append(row)
            log(f"{photo.name}: " + "; ".join(f"{s['setting'].split(' (')[0]} {s['ciede2000']:.2f}/{s['ciede2000_p95']:.2f}" for s in row["settings"]))
    (out_dir / "README.md").write_text(_page(figures))
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _page(figures: dict) -> str:
    lines = [
        "# What the change looks like: crops at 100%",
        "",
        f"Made by `ppjax bench crops` against `{figures['model']}` (PNG output, the social channel). Each crop is",
        f"{figures['crop']}x{figures['crop']} pixels cut at full resolution, where the L-infinity ball alone shows most",
        "(its highest mean CIEDE2000); view them at 100%, side by side. Under each: mean / 95th-percentile",
        "CIEDE2000, the share of 16x16 blocks seen at a glance (mean CIEDE2000 over 2), PSNR, and whether",
        "the written file is protected on every variant of the real channel.",
        "",
    ]
    columns = ["original", *figures["settings"]]
    for row in figures["photos"]:
        stem = Path(row["photo"]).stem
        lines += [f"## {row['photo']} ({row['size'][1]}x{row['size'][0]}, window at {row['window'][1]},{row['window'][0]})", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("| " + " | ".join("---" for _ in columns) + " |")
        cells = [f"![original]({stem}/original.png)"] + [f"![{s['setting']}]({stem}/{_slug(s['setting'])}.png)" for s in row["settings"]]
        lines.append("| " + " | ".join(cells) + " |")
        notes = [""] + [
            f"{s['ciede2000']:.2f} / {s['ciede2000_p95']:.2f}, {100 * s['blocks_seen']:.0f}% seen, {s['psnr']:.1f} dB, "
            f"{'protected' if s['protected'] else 'NOT protected'}: {s['words']}"
            for s in row["settings"]
        ]  # fmt: skip
        lines += ["| " + " | ".join(notes) + " |", ""]
    return "\n".join(lines)
