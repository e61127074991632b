"""How much protection survives JPEG output, with and without the JPEG refinement rounds.

For each quality, the same photos are protected twice through :func:`ppjax.protect.protect_files`
(``jpeg_rounds=0`` and the given number of rounds) into a temporary folder, and each decoded file
is judged by the classifier. Needs no PyTorch: it runs on any installed model.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ppjax.io import ImageReadError, read_image
from ppjax.protect import Protector, protect_files

__all__ = ["jpeg_bench_protector", "run_jpeg_bench"]


def jpeg_bench_protector(model, method: str = "pgd", eps: float = 4.0, steps: int = 20) -> Protector:
    """A protector against the loaded classifier ``model`` (cross-entropy objective) for the bench."""
    from ppjax import attacks

    if method in attacks.NEEDS_APPEAL:
        raise ValueError(f"--method {method} needs NIMA; the JPEG bench runs methods without it")
    return Protector([attacks.Target(model.apply, model.variables, attacks.cross_entropy())], method=method, eps=eps, steps=steps)


def run_jpeg_bench(
    protector: Protector,
    photos: Sequence[Path],
    qualities: Sequence[int],
    *,
    rounds: int = 3,
    size: int | None = 256,
    log: Callable[[str], None] = print,
) -> dict:
    """Protected-as-decoded counts per JPEG quality, without and with ``rounds`` refinement rounds.

    ``photos`` are resized to ``size`` × ``size`` (bicubic) first when ``size`` is given, as the
    task's classifier sees them; unreadable ones are skipped (and logged). Returns
    ``{"rows": [{quality, images, without, with, psnr_without, psnr_with, seconds_without,
    seconds_with}], ...}`` with PSNR in dB against the inputs.
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="ppjax-bench-jpeg-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "in").mkdir()
        inputs = []
        for n, src in enumerate(photos):
            try:
                img = Image.fromarray(read_image(src).rgb)
            except ImageReadError as e:
                log(f"skipped: {e}")
                continue
            if size:
                img = img.resize((size, size), Image.BICUBIC)
            dst = tmp_path / "in" / f"{n:05d}.png"
            img.save(dst)
            inputs.append(dst)
        for quality in qualities:
            row = {"quality": quality, "images": len(inputs)}
            for key, r in (("without", 0), ("with", rounds)):
                jobs = [(f, tmp_path / f"q{quality}-r{r}" / f"{f.stem}.jpg") for f in inputs]
                start = time.perf_counter()
                results = protect_files(protector, jobs, jpeg_quality=quality, jpeg_rounds=r)
                row[f"seconds_{key}"] = time.perf_counter() - start
                done = [x for x in results if x.protected is not None]
                row[key] = sum(x.protected for x in done)
                row[f"psnr_{key}"] = float(np.mean([x.psnr for x in done])) if done else float("nan")
            log(f"quality {quality}: {row['without']}/{len(inputs)} without rounds, {row['with']}/{len(inputs)} with {rounds}")
            rows.append(row)
    return {"rows": rows, "rounds": rounds, "eps_255": protector.eps, "method": protector.method, "steps": protector.steps}
