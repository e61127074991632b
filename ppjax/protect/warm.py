"""Compile ahead: a person's first `ppjax protect` starts warm.

:func:`warm_programs` protects one synthetic photo per shared canvas (:data:`ppjax.ops.canvas.CANVASES`)
with `ppjax protect`'s defaults against a model, into a temporary folder: every program a run needs
(the attack's on each canvas, judging, quality) is traced, exported and compiled into the store, so
that a later run on photos of any size loads them instead (`ppjax models import NAME --warm`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ppjax.ops.canvas import CANVASES

__all__ = ["warm_programs"]


def _sizes() -> list[tuple[int, int]]:
    """(height, width) of a photo that lands on each shared canvas (4:3, as phones take them)."""
    sizes = []
    for canvas in CANVASES:
        side = min(canvas.height, 1080)
        sizes.append((side * 3 // 4, side))
    return sizes


def warm_programs(model: str, load: Callable[[str], object], log: Callable[[str], None] = print) -> float:
    """Compile `ppjax protect`'s default programs for ``model`` (installed) on every shared canvas
    into the store; the seconds it took."""
    import time

    from ppjax import store
    from ppjax.protect.config import ProtectConfig
    from ppjax.protect.runner import build_protector, run

    start = time.perf_counter()
    store.use_jit_cache()
    with tempfile.TemporaryDirectory(prefix="ppjax-warm-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        rows = np.linspace(0, 255, 64, dtype=np.float32)
        for h, w in _sizes():
            ramp = np.stack(np.meshgrid(np.resize(rows, w), np.resize(rows[::-1], h)), axis=-1)
            pixels = np.concatenate([ramp, ramp[..., :1]], axis=-1).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{w}x{h}.png")
        config = ProtectConfig((folder,), Path(tmp) / "out", models=(model,))
        protector = build_protector(config, load, store.programs_folder())
        run(config, load, protector=protector, stage=lambda source, text: log(f"{source.stem}: {text}") if "compiling" in text else None)
    return time.perf_counter() - start
