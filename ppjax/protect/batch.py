"""Protect, write and judge one batch of photos that share a compiled program.

uint8 lives only here and in :mod:`ppjax.protect.files`, at the files' edge; the
:class:`~ppjax.protect.protector.Protector` sees float [0, 1] batches on the uint8 lattice.

- Social channel (:meth:`Batch.social`): photos on one canvas. Each written file is decoded and
  judged through the real channel's panel (:class:`~ppjax.protect.panel.PanelJudge`); a photo
  whose smallest lead there is over ``panel_margin`` (by default: protected on every variant) is
  finished at once, and the others get more steps through the channel's draws and are written
  again, for up to ``channel_rounds`` rounds.
- Exact channel (:meth:`Batch.exact`): photos of one size, judged as written; with JPEG output the
  verdict is taken on the decoded file, and an image the encoder un-protected gets further lattice
  steps against the classifiers behind a differentiable JPEG round trip, for up to
  ``jpeg_rounds`` rounds.

Every finished photo goes to ``finish`` (moved into place, recorded, reported) as soon as it is
final, not when its batch is.
"""

from __future__ import annotations

import contextlib
import errno
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ppjax import attacks
from ppjax.edits import apply_full
from ppjax.io.batching import bucket_size, pad_batch
from ppjax.io.futures import in_order, run_on
from ppjax.io.images import ImageReadError, ImageWriteError, read_image, to_float01, to_uint8, write_image
from ppjax.protect.config import PANEL_MARGIN
from ppjax.protect.fullsize import fit_allowance, lift, working_copy
from ppjax.protect.mottle_fit import fit_mottle
from ppjax.protect.manifest import staging_path
from ppjax.protect.panel import PanelJudge
from ppjax.protect.protector import Protector
from ppjax.protect.quality import psnr_ssim
from ppjax.protect.timings import NO_CLOCK

__all__ = ["ProtectResult", "VERDICT", "Batch", "image_keys"]


@dataclass
class ProtectResult:
    source: Path
    output: Path | None
    protected: bool | None = None  # as written (after JPEG decoding for JPEG output)
    skipped: str | None = None  # why nothing was written (existing output)
    error: str | None = None
    psnr: float | None = None  # dB
    ssim: float | None = None  # None where the image is smaller than SSIM's 11x11 window
    #: Social channel: on how many of the panel's variants the written file is protected, of how many.
    variants_protected: int | None = None
    variants: int | None = None
    #: Social channel: the labels of the variants it is not protected on.
    unprotected_variants: tuple[str, ...] = ()
    #: Edit methods: the edit applied, in words ("exposure +0.12 EV, saturation +8%, ...").
    edit: str | None = None
    #: The name the output would have had, had another input's output not taken it (:mod:`ppjax.io.naming`).
    renamed_from: str | None = None

    def to_json(self) -> dict:
        """Every field as a plain JSON value (paths as strings, tuples as lists)."""
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, row: dict) -> "ProtectResult":
        """The result :meth:`to_json` wrote."""
        row = dict(row)
        for k in ("source", "output"):
            row[k] = Path(row[k]) if row[k] is not None else None
        row["unprotected_variants"] = tuple(row.get("unprotected_variants") or ())
        return cls(**row)


#: The share of the mottle cap a photo written as JPEG is fitted to: the encoder's own error
#: moves the decoded bytes, and the fit leaves many pixels near the cap. At the whole cap the 8
#: shared 2560x1600 photos (JPEG q95) decoded at a mottle p95 of 2.09% and up to 6.2% of a photo's
#: smooth blocks mottled; at 0.9 of it 1.93% and 2.2% (docs/visibility.md).
JPEG_MOTTLE_HEADROOM = 0.9
#: How far past the margin (logits) the program's own lead on a photo must be for a later round to
#: be skipped: from the same bytes it would see the same draws and take no step (its leads, traced
#: once with a gradient and once without, agree to about 1e-4).
LEAD_SLACK = 0.05
#: The fields of a result that the manifest records with each output.
VERDICT = ("protected", "psnr", "ssim", "variants_protected", "variants", "unprotected_variants", "edit")


def image_keys(seed: int, sources, size: int) -> jax.Array:
    """(size,) keys: each image's from ``seed`` and its file's name (so its random draws never
    depend on its batch, nor on the folder it lies in or how its path was written), the last
    repeated over the padding."""
    base = jax.random.key(seed)
    keys = jnp.stack([jax.random.fold_in(base, zlib.crc32(Path(src).name.encode()) & 0x7FFFFFFF) for src in sources])
    return jnp.concatenate([keys, jnp.repeat(keys[-1:], size - len(sources), axis=0)])


@dataclass
class Batch:
    """Protects batches of photos with one protector (one device), writing each to its staging
    path; ``finish(result)`` takes each photo's final result; ``is_input(path)`` says whether a
    path is one of the run's inputs (never overwritten); ``stage(source, text)`` hears what each
    photo is doing (for progress)."""

    protector: Protector
    finish: Callable[[ProtectResult], None]
    is_input: Callable[[Path], bool]
    seed: int = 0
    max_batch: int = 8
    jpeg_quality: int = 95
    jpeg_rounds: int = 3
    channel_rounds: int = 3
    judge: PanelJudge | None = None
    stage: Callable[[Path, str], None] = lambda source, text: None
    #: Write each photo's allowlisted camera details (:mod:`ppjax.io.metadata`).
    keep_metadata: bool = False
    #: Hears each stage's seconds (:class:`ppjax.protect.timings.StageClock`; `ppjax bench profile`).
    clock: object = NO_CLOCK
    #: The real panel's smallest lead at which a photo is final (:data:`ppjax.protect.config.PANEL_MARGIN`).
    panel_margin: float = PANEL_MARGIN
    #: Why the run stopped (None while it goes on): "cancelled" (Ctrl+C, the page's Cancel) or a
    #: reason such as a full disk; the photos in flight stop at their next stage (after the program
    #: call under way, which cannot be cut short) and are not written.
    stopped: Callable[[], str | None] = lambda: None
    #: Stops the whole run for the reason given (a full disk: every later photo would be attacked
    #: only to fail at its write).
    halt: Callable[[str], None] = lambda reason: None
    _done: set = field(default_factory=set)

    def run(self, jobs, images) -> None:
        """Protect ``jobs`` ((input, output) pairs) of decoded ``images``, reporting any error for
        the photos not yet finished: one odd photo must never end the run."""
        try:
            if self.protector.channel == "exact":
                self.exact(jobs, images)
            else:
                self.social(jobs, images)
        except Exception as e:  # noqa: BLE001
            for (src, out), im in zip(jobs, images):
                staging_path(out).unlink(missing_ok=True)
                if src not in self._done:
                    h, w = im.size
                    self._final(ProtectResult(src, None, error=f"{src}: cannot be protected at {w}x{h} pixels ({type(e).__name__}: {e})"))

    def _announce(self, jobs, canvas, size: int) -> None:
        """Tell ``stage`` the photos are being protected, and when this process has not run their
        program yet, that it compiles now (or loads from the store)."""
        cold = not self.protector.is_warm(canvas, size)
        for src, _ in jobs:
            self.stage(src, f"compiling for the {canvas.label()} canvas, once" if cold else "protecting")

    def _final(self, result: ProtectResult) -> None:
        self._done.add(result.source)
        self.finish(result)

    def _cancelled(self, jobs) -> bool:
        """Whether the run has stopped (cancelled, or halted by a full disk); if so, each of
        ``jobs`` not final yet is final as skipped for that reason and its staging file (an
        earlier round's) removed."""
        reason = self.stopped()
        if not reason:
            return False
        for src, out in jobs:
            if src not in self._done:
                staging_path(out).unlink(missing_ok=True)
                self._final(ProtectResult(src, None, skipped=reason))
        return True

    # -- the social channel ----------------------------------------------------------------------

    def social(self, jobs, images) -> None:
        """Protect photos sharing a canvas through the social channel (see the module docstring)."""
        p, clock = self.protector, self.clock
        n = len(jobs)
        with clock("working copy and canvas"):
            works = [working_copy(im.rgb, p.work_plan(*im.rgb.shape[:2])[0]) for im in images]
            canvas = p.photo_canvas(*images[0].rgb.shape[:2])
            size = bucket_size(n, self.max_batch)
            scales = [w.shape[0] / im.rgb.shape[0] for w, im in zip(works, images)]
            x, geometry = p.layout(canvas, works + [works[-1]] * (size - n), scales + [scales[-1]] * (size - n))
            x01 = to_float01(x)
            keys = image_keys(self.seed, [src for src, _ in jobs], size)
        cold = not p.is_warm(canvas, size)
        self._announce(jobs, canvas, size)
        judge = self.judge or PanelJudge(p)
        # The originals' panels on the host while the attack runs: they do not depend on it.
        started = in_order(judge.original, [im.rgb for im in images], name="ppjax-original")
        found = None  # the edit methods' EditResult, per photo of the batch
        with clock("attack, compiling or loading its program" if cold else "attack, first round"):
            if p.is_edit:
                q, _, _, found = p.protect_edit(keys, x01, geometry, exact=canvas.exact)
                q = np.array(q)
            else:
                q, _, computed = p.protect_canvas(keys, x01, geometry, exact=canvas.exact)
                q, computed = np.array(q), np.array(computed)
        with clock("waiting for the originals' panels"):
            originals = [f.result() for f in started]
        written: list = [None] * n
        leads: list = [None] * n
        quality: list = [None] * n
        best = [float("-inf")] * n
        pending = list(range(n))
        for round_ in range(self.channel_rounds + 1):
            if self._cancelled(jobs):
                return
            for j in pending:
                self.stage(jobs[j][0], "verifying" if round_ == 0 else f"verifying (round {round_ + 1})")
            with clock("carry back to full size, fit to the budget"):
                full = [self._full(images[j].rgb, works[j], q[j], _row(found, j), _is_jpeg(jobs[j][1])) for j in pending]
            with clock("write and read back"):
                files = self._write(full, [jobs[j] for j in pending], [images[j] for j in pending])
            for j, w in zip(pending, files):
                if w is None:  # the error is reported; nothing more to do for this photo
                    written[j] = None
                    continue
                # PSNR and SSIM (2 s at 12 megapixels) on the pool, while the panel is judged.
                quality[j] = run_on(judge.pool, self._timed_quality, images[j].rgb, w)
                written[j], leads[j] = w, judge.leads(w, originals[j])
            # Done: past the panel's margin on every variant, out of rounds, or a round that did not
            # raise its smallest lead (its draws already have the margin the real variant lacks).
            last = round_ == self.channel_rounds
            for j in list(pending):
                if written[j] is None:
                    pending.remove(j)
                    continue
                low = float(leads[j].min())
                if low > self.panel_margin or last or low <= best[j] + 0.1:
                    pending.remove(j)
                    edit = None if found is None else p.pipeline.describe(_row(found, j).params)
                    with clock("waiting for PSNR and SSIM"):
                        measured = quality[j].result()
                    self._judged(jobs[j], measured, leads[j], originals[j].variants, edit)
                best[j] = low
            if found is None:
                # The real panel found too small a lead (what carrying back, fitting and encoding
                # left), but the program's own draws had the margin: a later round from the same
                # bytes would take no step, write the same file and hear the same verdict. Final
                # now, without the program's call (a second at full size).
                for j in [j for j in pending if computed[j] > p.margin + LEAD_SLACK]:
                    pending.remove(j)
                    self._final_as_judged(jobs[j], quality[j], leads[j], originals[j].variants)
            if not pending:
                return
            for j in pending:
                self.stage(jobs[j][0], f"protecting (round {round_ + 2})")
            with clock("attack, later rounds"):
                if found is None:
                    q2, _, computed2 = p.protect_canvas(keys, x01, geometry, start01=q, exact=canvas.exact)
                    q2 = np.asarray(q2)
                else:  # the edit's search goes on from where it stopped
                    q2, _, _, again = p.protect_edit(keys, x01, geometry, params=found.params, exact=canvas.exact)
                    found = jax.tree_util.tree_map(lambda old, new: _rows_from(old, new, pending), found, again)
                    q2 = np.asarray(q2)
            if found is None:
                # A pixel method's round that left a photo's pixels as they were (its draws already
                # had the margin) would write the same bytes and hear the same verdict: final now,
                # without a second carry-back, panel and PSNR (1.5-2 s at full size).
                for j in [j for j in pending if np.array_equal(q2[j], q[j])]:
                    pending.remove(j)
                    self._final_as_judged(jobs[j], quality[j], leads[j], originals[j].variants)
                if not pending:
                    return
                computed[pending] = np.asarray(computed2)[pending]
            q[pending] = q2[pending]

    def _final_as_judged(self, job, quality, leads, variants) -> None:
        """A pixel method's photo final with the file already written and judged (``quality``: the
        pool's PSNR and SSIM, still running)."""
        with self.clock("waiting for PSNR and SSIM"):
            measured = quality.result()
        self._judged(job, measured, leads, variants)

    def _timed_quality(self, original, written):
        with self.clock("PSNR and SSIM (on the pool)"):
            return psnr_ssim(original, written)

    def _full(self, rgb, work, q01, edit=None, jpeg: bool = False) -> np.ndarray:
        """The full-size uint8 photo from its protected working copy on the canvas; for the edit
        methods (``edit``: the photo's row of the EditResult) the edit applied to the original
        itself, plus a hybrid's pixel noise carried over like the pixel methods' change."""
        p = self.protector
        h, w = work.shape[:2]
        protected = to_uint8(q01[:h, :w])
        if edit is None:
            if work is rgb:
                # On a canvas a photo's border pixels see the canvas's black beyond it as texture;
                # its allowance is the photo's own.
                out = protected if p.perceptual is None else fit_allowance(rgb, protected, p.perceptual, p.fit_programs)
            else:
                out = lift(rgb, work, protected, p.eps, p.min_psnr, p.perceptual, p.fit_programs)
            return self._mottle_fitted(rgb, out, jpeg)
        coefficients = None if edit.coefficients is None else edit.coefficients[:h, :w]
        full = apply_full(p.pipeline, edit.params, rgb, coefficients)
        if not attacks.METHODS[p.method].hybrid:
            return full
        return lift(full, to_uint8(edit.edited[:h, :w]), protected, p.eps, p.min_psnr, p.perceptual, p.fit_programs)

    def _mottle_fitted(self, original, changed, jpeg: bool = False) -> np.ndarray:
        """``changed`` (H, W, 3 uint8) with its mottle fitted under the perceptual budget's cap
        (:func:`ppjax.protect.mottle_fit.fit_mottle`), or as it is when there is none; to
        :data:`JPEG_MOTTLE_HEADROOM` of the cap for a photo written as JPEG (``jpeg``)."""
        p = self.protector
        if p.perceptual is None or p.perceptual.mottle is None:
            return changed
        with self.clock("fit the mottle"):
            return fit_mottle(original, changed, p.perceptual.mottle * (JPEG_MOTTLE_HEADROOM if jpeg else 1.0))

    def _judged(self, job, quality, leads, variants, edit=None) -> None:
        src, out = job
        p_db, s = quality
        ok = leads > 0.0
        self._final(ProtectResult(
            src, out, protected=bool(ok.all()), psnr=p_db, ssim=s, variants_protected=int(ok.sum()), variants=len(variants),
            unprotected_variants=tuple(v.label() for v, good in zip(variants, ok) if not good), edit=edit,
        ))  # fmt: skip

    # -- the exact channel -----------------------------------------------------------------------

    def exact(self, jobs, images) -> None:
        """Protect same-sized photos as the classifiers see them (see the module docstring)."""
        p = self.protector
        n = len(jobs)
        size = bucket_size(n, self.max_batch)
        keys = image_keys(self.seed, [src for src, _ in jobs], size)
        padded = pad_batch(np.stack([im.rgb for im in images]), size)
        x01 = to_float01(padded)
        cold = not p.is_warm(p.canvas_for(*padded.shape[1:3]), size)
        self._announce(jobs, p.canvas_for(*padded.shape[1:3]), size)
        with self.clock("attack, compiling or loading its program" if cold else "attack, first round"):
            q01, labels, flags = p(keys, x01)
            computed = to_uint8(q01[:n])
        if self._cancelled(jobs):
            return
        q = np.stack([self._mottle_fitted(im.rgb, c, _is_jpeg(out)) for im, c, (_, out) in zip(images, computed, jobs)])
        with self.clock("write and read back"):
            written = self._write(list(q), jobs, images)
        is_jpeg = [_is_jpeg(out) for _, out in jobs]
        # Verdicts on the padded batch, so every call keeps the bucket's shape.
        current = _with_rows(padded, written)
        if not np.array_equal(q, computed) or not all(w is None or np.array_equal(w, q[j]) for j, w in enumerate(written)):
            flags = p.verify(to_float01(current), labels)  # lossy files: judge what was decoded
        encoded = _with_rows(padded, list(q))
        for _ in range(self.jpeg_rounds if any(is_jpeg) else 0):
            # The encoder may have undone the protection: step on from what was encoded, against
            # the classifiers behind a differentiable JPEG round trip, and encode again.
            if self._cancelled(jobs):
                return
            redo = [j for j, w in enumerate(written) if w is not None and is_jpeg[j] and not flags[j]]
            if not redo:
                break
            q2 = to_uint8(p.refine_for_jpeg(keys, x01, to_float01(encoded), labels, self.jpeg_quality))
            q2 = {j: self._mottle_fitted(images[j].rgb, q2[j], True) for j in redo}
            again = self._write([q2[j] for j in redo], [jobs[j] for j in redo], [images[j] for j in redo])
            for j, w in zip(redo, again):
                written[j] = w
                if w is not None:
                    encoded[j] = q2[j]
            current = _with_rows(padded, written)
            flags = p.verify(to_float01(current), labels)
        for j, w in enumerate(written):
            if w is not None:
                src, out = jobs[j]
                p_db, s = psnr_ssim(images[j].rgb, w)
                self._final(ProtectResult(src, out, protected=bool(flags[j]), psnr=p_db, ssim=s))

    # -- files -----------------------------------------------------------------------------------

    def _write(self, pixels, jobs, loaded) -> list:
        """Write each (H, W, 3) uint8 image of ``pixels`` to its staging file, with its input's
        alpha (and EXIF, asked to); the decoded bytes on disk per image (None where writing failed:
        the error is reported as that photo's result, and an earlier round's file removed)."""
        written = []
        for img, (src, out), source in zip(pixels, jobs, loaded):
            try:
                if self.is_input(out):
                    raise ImageWriteError(f"{out}: refusing to overwrite an input image")
                exif = source.exif if self.keep_metadata else None
                staged = write_image(staging_path(out), img, source.alpha, jpeg_quality=self.jpeg_quality, exif=exif)
                written.append(read_image(staged).rgb)  # the bytes on disk, decoded again
            except (ImageWriteError, ImageReadError) as e:
                with contextlib.suppress(OSError):
                    staging_path(out).unlink(missing_ok=True)
                message = str(e).replace(str(staging_path(out)), str(out))  # the name a person knows
                if getattr(e, "errno", None) in DISK_FULL:
                    self.halt(f"{DISK_FULL_REASON} {out.parent} is full")
                self._final(ProtectResult(src, None, error=message))
                written.append(None)
        return written


#: The system's answers for a disk (or a quota) that takes no more: the run stops.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How a photo skipped for a full disk is reported: this, the folder, "is full".
DISK_FULL_REASON = "not written: the disk holding"


def _is_jpeg(out: Path) -> bool:
    return out.suffix.lower() in (".jpg", ".jpeg")


def _row(found, j):
    """Photo ``j``'s row of an EditResult (None stays None)."""
    return None if found is None else jax.tree_util.tree_map(lambda a: a[j], found)


def _rows_from(old: np.ndarray, new: np.ndarray, rows: list) -> np.ndarray:
    """``old`` with ``rows`` taken from ``new``."""
    out = np.array(old)
    out[rows] = new[rows]
    return out


def _with_rows(padded: np.ndarray, written: list) -> np.ndarray:
    """``padded`` with row j replaced by ``written[j]`` (the decoded file) where there is one."""
    out = padded.copy()
    for j, w in enumerate(written):
        if w is not None:
            out[j] = w
    return out
