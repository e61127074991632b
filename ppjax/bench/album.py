"""`ppjax bench album`: what a person with a folder of phone photos waits, cold and warm.

Each run is a fresh child process of the real command line, as a person starts it:

1. a fresh model store (a temporary ``PPJAX_HOME``), ``ppjax models import MODEL`` (timed);
2. ``ppjax protect --model MODEL`` on an album of eight photos in the eight sizes a phone and a
   laptop hold (:data:`ALBUM_SIZES`; JPEG, as phones write them): the cold run, compiling;
3. the same on a second album of the same sizes made from other photos, in a new process: the
   warm run, with the store's programs from the first;
4. optionally (``odd``) seven small odd images (five 64x64, a 3x2000 strip, a 1x1 dot) from a
   fresh store again.

It prints each run's wall time, peak resident memory, how many photos were protected on every
variant of the real channel's panel, and how many distinct attack programs the store holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ppjax.io import read_image

__all__ = ["ALBUM_SIZES", "ODD_SIZES", "make_album", "run_album_bench"]

#: (width, height): a phone's 12 MP landscape and portrait, a screenshot, social-media portrait and
#: square, a laptop wallpaper, VGA, and the 299x299 of the research sets.
ALBUM_SIZES = ((4032, 3024), (3024, 4032), (1920, 1080), (1080, 1350), (1080, 1080), (2560, 1600), (640, 480), (299, 299))
#: (width, height) of the odd images: three sizes, seven images.
ODD_SIZES = ((64, 64),) * 5 + ((3, 2000), (1, 1))


def _cover(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` centre-cropped to the aspect of ``size`` (width, height) and resized to it (bicubic)."""
    w, h = size
    scale = max(w / img.width, h / img.height)
    cw, ch = min(img.width, round(w / scale)), min(img.height, round(h / scale))
    left, top = (img.width - cw) // 2, (img.height - ch) // 2
    return img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC)


def make_album(photos: list[Path], sizes, folder: Path, offset: int = 0) -> list[Path]:
    """One JPEG (quality 92) per size in ``folder``, the i-th from photo ``i + offset`` (cycling)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, size in enumerate(sizes):
        img = Image.fromarray(read_image(photos[(i + offset) % len(photos)]).rgb)
        path = folder / f"{i:02d}-{size[0]}x{size[1]}.jpg"
        _cover(img, size).save(path, quality=92)
        out.append(path)
    return out


def _odd_album(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(ODD_SIZES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:02d}-{w}x{h}.png")


def _child(args: list[str], home: Path) -> dict:
    """``ppjax ARGS`` in a new process with ``PPJAX_HOME=home``: wall seconds and peak RSS (GB)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        rss_file = f.name
    env = {**os.environ, "PPJAX_HOME": str(home), "PPJAX_PEAK_RSS_FILE": rss_file}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ppjax.bench.child", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    try:
        peak = json.loads(Path(rss_file).read_text())["peak_rss_gb"]
    except (OSError, ValueError, KeyError):
        peak = float("nan")
    finally:
        Path(rss_file).unlink(missing_ok=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"ppjax {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return {"seconds": seconds, "peak_rss_gb": peak, "stdout": done.stdout, "stderr": done.stderr}


def _protect(model: str, album: Path, out: Path, home: Path, extra: list[str]) -> dict:
    summary = out.with_suffix(".json")
    row = _child(["protect", "--model", model, "-o", str(out), "--json", str(summary), *extra, str(album)], home)
    data = json.loads(summary.read_text())
    row.update({
        "photos": data["images"], "protected": data["protected"], "failed": data["failed"],
        "variants_protected": data["variants_protected"], "variants": data["variants"], "mean_psnr_db": data["mean_psnr_db"],
    })  # fmt: skip
    row["programs"] = len(list((home / "jit-cache" / "programs").glob("run-*.jaxexport")))
    return row


def _per_photo(model: str, photos: list[Path], home: Path, size: tuple[int, int], tmp: Path) -> dict:
    """Seconds per photo of ``photos`` at ``size`` (width, height) once compiled: a child process
    protects the first photo (compiling, or loading from the store), then all of them, timed."""
    folder = tmp / f"per-photo-{size[0]}x{size[1]}"
    make_album(photos, [size] * len(photos), folder)
    cmd = [sys.executable, "-m", "ppjax.bench.album", model, str(folder), str(tmp / f"out-{size[0]}x{size[1]}")]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PPJAX_HOME": str(home)})
    if done.returncode != 0:
        raise RuntimeError(f"per-photo timing failed at {size[0]}x{size[1]}: {done.stderr.strip()[-2000:]}")
    return {"size": f"{size[0]}x{size[1]}", **json.loads(done.stdout.strip().splitlines()[-1])}


def _per_photo_child(model: str, folder: str, out: str) -> dict:
    """Protect the folder's first photo, then every photo (timed), with `ppjax protect`'s defaults."""
    from ppjax import store
    from ppjax.bench.robustness import _peak_rss_kb
    from ppjax.protect.config import ProtectConfig
    from ppjax.protect.runner import build_protector, run

    store.use_jit_cache()
    files = sorted(Path(folder).iterdir())
    config = ProtectConfig(tuple(files[:1]), Path(out) / "warm-up", models=(model,))
    protector = build_protector(config, store.load_model, store.programs_folder())
    run(config, store.load_model, protector=protector)
    config = ProtectConfig(tuple(files), Path(out) / "timed", models=(model,))
    start = time.perf_counter()
    summary = run(config, store.load_model, protector=protector)
    seconds = time.perf_counter() - start
    written = summary.written
    return {"photos": len(files), "seconds_per_photo": seconds / len(files), "protected": sum(bool(r.protected) for r in written),
            "peak_rss_gb": _peak_rss_kb() / 1024**2}  # fmt: skip


def run_album_bench(photos: list[Path], model: str = "efficientnet-lite0", *, odd: bool = True, extra: list[str] = (), log=print) -> dict:
    """The runs of the module docstring on albums made from ``photos``; their figures. Also the
    seconds per photo at 256x256 and at 12 megapixels, each in a warm process of its own (the
    process's start and its programs' loading included, spread over the photos)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ppjax-bench-album-") as tmp:
        tmp = Path(tmp)
        home = tmp / "store"
        make_album(photos, ALBUM_SIZES, tmp / "album-a")
        make_album(photos, ALBUM_SIZES, tmp / "album-b", offset=len(ALBUM_SIZES) // 2)
        imported = _child(["models", "import", model], home)
        log(f"models import: {imported['seconds']:.1f} s")
        cold = _protect(model, tmp / "album-a", tmp / "out-a", home, list(extra))
        cold["seconds_with_import"] = cold["seconds"] + imported["seconds"]
        rows.append({"run": "album, cold (fresh store, import included)", **cold})
        log(f"cold album: {cold['seconds_with_import']:.1f} s with the import, {cold['protected']}/{cold['photos']} protected")
        warm = _protect(model, tmp / "album-b", tmp / "out-b", home, list(extra))
        rows.append({"run": "album, warm (other photos, new process)", **warm})
        log(f"warm album: {warm['seconds']:.1f} s, {warm['protected']}/{warm['photos']} protected")
        if odd:
            odd_home = tmp / "store-odd"
            _odd_album(tmp / "odd")
            again = _child(["models", "import", model], odd_home)
            row = _protect(model, tmp / "odd", tmp / "out-odd", odd_home, ["--steps", "3", *extra])
            row["seconds_with_import"] = row["seconds"] + again["seconds"]
            rows.append({"run": "7 odd images, cold (fresh store, import included)", **row})
            log(f"odd images: {row['seconds_with_import']:.1f} s with the import")
        per_photo = [_per_photo(model, photos, home, size, tmp) for size in ((256, 256), (4032, 3024))]
        log("per photo: " + ", ".join(f"{r['size']} {r['seconds_per_photo']:.1f} s" for r in per_photo))
    for row in rows + per_photo:
        row.pop("stdout", None)
        row.pop("stderr", None)
    ratio = per_photo[1]["seconds_per_photo"] / per_photo[0]["seconds_per_photo"]
    return {"model": model, "sizes": [list(s) for s in ALBUM_SIZES], "rows": rows, "per_photo": per_photo, "ratio_12mp_256": ratio, "cpus": os.cpu_count()}


if __name__ == "__main__":  # the per-photo timing child: MODEL FOLDER OUT_DIR
    print(json.dumps(_per_photo_child(*sys.argv[1:4])))
