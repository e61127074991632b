"""What the page's worker does with a job: `ppjax protect`'s run, photo by photo, in the page's words.

Each job is one :func:`ppjax.protect.runner.run` with the person's strength and metadata choice,
the output format of each input's own kind, and the job's own output folder. Its stages and
results become the job's events; each finished photo's result carries what the classifier infers
before and after (its top classes through the Places365 demo's view, 256 and a centre 224), the
name it was written under (and, when another photo of the batch took its name, the name it would
have had), and its preview is made before the page hears of it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from ppjax.app.jobs import FINAL_STATES, Job, read_rgb, top_classes, write_preview
from ppjax.io.real_channel import apply_real
from ppjax.ops.channel import Variant

__all__ = ["Protection", "LOOK_METHODS"]

#: The page's looks: the protect method each one runs.
LOOK_METHODS = {"noise": "pgd", "edit": "edit+pgd"}

#: The view the page shows the classifier's classes through: the Places365 demo's.
_SHOWN_VIEW = Variant("demo", "bilinear")


def job_config(job: Job, model_name: str):
    """The :class:`~ppjax.protect.config.ProtectConfig` of a page's batch, from the settings it was
    started with (strength, look, keep camera details, private names)."""
    from ppjax.protect.config import ProtectConfig

    return ProtectConfig(
        tuple(p.original for p in job.photos), job.out_dir, models=(model_name,), strength=job.settings.get("strength", "mid"),
        method=LOOK_METHODS[job.settings.get("look", "noise")], keep_metadata=bool(job.settings.get("keep_metadata")),
        private_names=bool(job.settings.get("private_names")),
    )  # fmt: skip


class Protection:
    """Protects jobs against the installed model ``model_name`` (``load(name)`` loads a model),
    keeping traced programs in ``program_folder``; a protector per strength and look, built once."""

    def __init__(self, model_name: str, load: Callable, program_folder: Path | None = None):
        from ppjax.predict.classify import make_probabilities

        self.model_name, self.load, self.program_folder = model_name, load, program_folder
        self.model = load(model_name)
        self._probs = make_probabilities(self.model, program_folder)
        self._protectors: dict = {}

    def classify(self, rgb: np.ndarray) -> dict:
        """The top classes of an (H, W, 3) uint8 photo through :data:`_SHOWN_VIEW`."""
        seen = apply_real(rgb, _SHOWN_VIEW)[None].astype(np.float32) / np.float32(255.0)
        probs = np.asarray(self._probs(seen))[0]
        return top_classes(probs, self.model.labels, self.model.sensitive)

    def __call__(self, job: Job) -> None:
        from ppjax.protect.runner import build_protector, run

        config = job_config(job, self.model_name)
        strength, method = config.strength.value, config.method.value
        if (strength, method) not in self._protectors:
            self._protectors[strength, method] = build_protector(config, self.load, self.program_folder)
        by_source = {p.original: p for p in job.photos}

        def stage(source: Path, text: str) -> None:
            photo = by_source.get(Path(source))
            with job.lock:
                if photo is not None and photo.state not in FINAL_STATES:
                    state = "compiling" if text.startswith("compiling") else text.split(" ")[0]
                    job.set_photo(photo, state, text)

        def on_result(result) -> None:
            photo = by_source.get(Path(result.source))
            if photo is None:
                return
            if result.output is not None:
                self._finish(job, photo, result)
                return
            with job.lock:
                if photo.state in FINAL_STATES:
                    return
                if result.error:
                    job.set_photo(photo, "error", result.error.replace(str(photo.original), photo.name))
                elif result.skipped == "cancelled":
                    job.set_photo(photo, "cancelled", "cancelled before it started")
                else:
                    reason = result.skipped if result.skipped.startswith("not written") else f"not written: {result.skipped}"
                    job.set_photo(photo, "skipped", reason.replace(str(job.out_dir), "the output folder"))

        run(config, self.load, protector=self._protectors[strength, method], stage=stage, on_result=on_result, cancelled=job.cancel.is_set)

    def _finish(self, job: Job, photo, result) -> None:
        """A written photo: its preview and classes, then "done"; unless the job was cancelled
        meanwhile, in which case the file goes (the page said it would not be written)."""
        from ppjax.protect.quality import colour_difference, visibility_words

        before, after = read_rgb(photo.original), read_rgb(result.output)
        preview = job.folder / "previews" / f"{photo.index}-after.jpg"
        made = write_preview(after, preview)  # the pixels just read: the output is decoded once
        seen = colour_difference(before, after) if before is not None and after is not None and before.shape == after.shape else None
        details = {
            "visibility": None if seen is None else {**seen, "words": visibility_words(seen["ciede2000_p95"], seen["blocks_seen"], seen["blocks_mottled"])},
            "protected": bool(result.protected), "variants_protected": result.variants_protected, "variants": result.variants,
            "unprotected_variants": list(result.unprotected_variants), "edit": result.edit,
            # JSON has no infinity: an unchanged photo's PSNR goes as null
            "psnr": result.psnr if result.psnr is not None and math.isfinite(result.psnr) else None, "ssim": result.ssim,
            "output_name": result.output.name, "renamed_from": result.renamed_from,
            "before": self.classify(before) if before is not None else None,
            "after": self.classify(after) if after is not None else None,
        }  # fmt: skip
        with job.lock:
            if photo.state in FINAL_STATES:  # cancelled while it was being written
                result.output.unlink(missing_ok=True)
                return
            photo.output, photo.result = result.output, details
            if made:
                photo.previews["after"] = preview
            job.set_photo(photo, "done", "protected" if result.protected else "written, not protected on every variant", result=details)
