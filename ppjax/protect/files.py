"""Protect image files: decode, batch, protect, write, read back, judge what was written.

uint8 lives only here, at the files' edge; the :class:`~ppjax.protect.protector.Protector` sees
float [0, 1] batches on the uint8 lattice. With JPEG output the verdict is taken on the decoded
file; an image the encoder un-protected gets further lattice steps against the classifiers behind
a differentiable JPEG round trip and is encoded again, for up to ``jpeg_rounds`` rounds.

With the social channel the verdict is taken on the decoded file passed through the real channel's
panel (:func:`ppjax.ops.channel.panel`, on Pillow): an image is protected only when every variant
is, and one not protected with margin on every variant gets more steps through the channel's
draws and is written again, for up to ``channel_rounds`` rounds.
"""

from __future__ import annotations

import contextlib
import os
import queue
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ppjax.io.batching import bucket_size, decode_in_chunks, group_batches, pad_batch
from ppjax.io.images import ImageReadError, ImageWriteError, read_image, to_float01, to_uint8, write_image
from ppjax.io.real_channel import apply_real_panel
from ppjax.ops import metrics
from ppjax.ops.channel import panel, platform_size
from ppjax.ops.resample import resize
from ppjax.protect.devices import replicas
from ppjax.protect.manifest import Decision, Manifest, clean_leftovers, staging_path
from ppjax.protect.protector import Protector, quantise

__all__ = ["ProtectResult", "plan_work", "protect_files"]


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


def protect_files(
    protector: Protector,
    jobs: Sequence[tuple[Path, Path]],
    *,
    seed: int = 0,
    max_batch: int = 8,
    jpeg_quality: int = 95,
    jpeg_rounds: int = 3,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    chunk: int = 64,
    channel_rounds: int = 3,
    max_batch_pixels: int = 1 << 22,
    manifest: Manifest | None = None,
    devices: Sequence | None = None,
) -> list[ProtectResult]:
    """Protect each (input, output) pair.

    Without a ``manifest`` an output that exists is kept unless ``overwrite``; with one, it is kept
    only when the manifest records it as made from this input with these settings, and each
    finished output is recorded there (see :mod:`ppjax.protect.manifest`). Outputs are made under
    a hidden staging name and renamed into place when final; what a killed run left is removed.

    Images are grouped by size and padded to bucket sizes so each shape compiles a few times at
    most. Each image's key comes from ``seed`` and its input path, so its random draws do not
    depend on the batch it lands in: the same inputs, seed and batch size give the same bytes,
    and a resumed run draws the same random starts. (Its bytes can still differ in rare pixels
    when the batch differs: a batch of another size is computed in another float order.)
    Inputs are decoded ``chunk`` at a time; batches are formed within a chunk, and hold at most
    ``max_batch_pixels`` pixels (at least one image), so full-resolution photos go one at a time.

    ``devices``: the local devices to use (default: JAX's default device only). Batches are formed
    exactly as for one device and each runs whole on one device, so that the bytes do not depend on
    how many devices there are (see :func:`ppjax.protect.devices.replicas`).
    """
    pending, results = plan_work(jobs, manifest, overwrite)
    clean_leftovers(out for _, out in pending)
    if manifest and pending:
        manifest.start()
    done_count = len(results)
    if progress:
        progress(done_count)
    protectors = [protector] if not devices or len(devices) < 2 else replicas(protector, devices)
    idle: queue.SimpleQueue = queue.SimpleQueue()
    for p in protectors:
        idle.put(_Batch(p, seed, max_batch, jpeg_quality, jpeg_rounds, [src for src, _ in jobs], results, channel_rounds, manifest))

    def run_batch(batch_jobs, images, cap) -> int:
        batch = idle.get()
        try:
            batch.protect_or_report(batch_jobs, images, cap)
        finally:
            idle.put(batch)
        return len(batch_jobs)

    pool = ThreadPoolExecutor(len(protectors), thread_name_prefix="ppjax-device") if len(protectors) > 1 else None
    try:
        for first, decoded in zip(range(0, len(pending), chunk), decode_in_chunks([src for src, _ in pending], chunk)):
            todo, loaded = [], []
            for job, item in zip(pending[first : first + chunk], decoded):
                if isinstance(item, ImageReadError):
                    results.append(ProtectResult(job[0], None, error=str(item)))
                    done_count += 1
                else:
                    todo.append(job)
                    loaded.append(item)
            batches = [
                ([todo[i] for i in idx], [loaded[i] for i in idx], min(max_batch, _pixel_cap(loaded[idx[0]], max_batch_pixels)))
                for idx in _size_batches(loaded, max_batch, max_batch_pixels)
            ]
            # Each batch runs whole on one device (its own thread); a chunk's batches finish before
            # the next chunk is decoded, so memory stays bounded.
            finished = (f.result() for f in as_completed([pool.submit(run_batch, *b) for b in batches])) if pool else (run_batch(*b) for b in batches)
            for n in finished:
                done_count += n
                if progress:
                    progress(done_count)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    order = {src: n for n, (src, _) in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.source])


def plan_work(jobs: Sequence[tuple[Path, Path]], manifest: Manifest | None, overwrite: bool) -> tuple[list, list[ProtectResult]]:
    """(the jobs to do, a result for each job skipped): by ``manifest`` (read afresh) when given,
    else any existing output is skipped unless ``overwrite``."""
    results: list[ProtectResult] = []
    pending = []
    if manifest:
        manifest.refresh()
    for src, out in jobs:
        if manifest:
            decision = manifest.decide(src, out, overwrite)
        else:
            decision = Decision(True) if overwrite or not out.exists() else Decision(False, "output exists (use --overwrite)")
        if decision.redo:
            pending.append((src, out))
        elif decision.record is not None:  # made by this same run (a retried batch): its verdict
            results.append(ProtectResult(src, out, **{k: decision.record.get(k) for k in _VERDICT if k in decision.record}))
        else:
            results.append(ProtectResult(src, out, skipped=decision.reason))
    return pending, results


@dataclass
class _Batch:
    """Protects, writes and judges one batch of same-sized images at a time, into ``results``."""

    protector: Protector
    seed: int
    max_batch: int
    jpeg_quality: int
    jpeg_rounds: int
    sources: list[Path]
    results: list[ProtectResult]
    channel_rounds: int = 3
    manifest: Manifest | None = None
    _inputs: tuple | None = None

    def protect_or_report(self, jobs, images, max_batch: int) -> None:
        """:meth:`protect`, with any error reported for the batch's images not yet finished: one
        odd size must never end the run."""
        try:
            self.protect(jobs, images, max_batch)
        except Exception as e:  # noqa: BLE001
            h, w = images[0].size
            sources = {src for src, _ in jobs}
            done = {r.source for r in list(self.results) if r.source in sources}  # finished before the error
            for src, out in jobs:
                staging_path(out).unlink(missing_ok=True)
                if src not in done:
                    self.results.append(ProtectResult(src, None, error=f"{src}: cannot be protected at {w}x{h} pixels ({type(e).__name__}: {e})"))

    def _is_input(self, out: Path) -> bool:
        """Whether ``out`` is one of the inputs (by path, or the same file under another name)."""
        if self._inputs is None:
            paths = {Path(p).resolve() for p in self.sources}
            nodes = set()
            for p in paths:
                with contextlib.suppress(OSError):
                    st = p.stat()
                    nodes.add((st.st_dev, st.st_ino))
            self._inputs = (paths, nodes)
        paths, nodes = self._inputs
        if out.resolve() in paths:
            return True
        try:
            st = out.stat()
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in nodes

    def _finish(self, result: ProtectResult) -> None:
        """Move the image's finished staging file into place (recorded in the manifest) and
        report it."""
        staged = staging_path(result.output)
        if self.manifest is not None:
            verdict = {k: getattr(result, k) for k in _VERDICT}
            self.manifest.commit(result.source, staged, result.output, verdict)
        else:
            os.replace(staged, result.output)
        self.results.append(result)

    def protect(self, jobs, images, max_batch: int | None = None) -> None:
        n = len(jobs)
        size = bucket_size(n, max_batch or self.max_batch)
        base = jax.random.key(self.seed)
        keys = jnp.stack([jax.random.fold_in(base, _stable_hash(str(src))) for src, _ in jobs])
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], size - n, axis=0)])
        padded = pad_batch(np.stack([im.rgb for im in images]), size)
        alphas = [im.alpha for im in images]
        if self.protector.channel != "exact":
            self._through_channel(jobs, keys, padded, alphas)
            return
        x01 = to_float01(padded)
        q01, labels, flags = self.protector(keys, x01)
        q = to_uint8(q01[:n])
        written = self._write_and_reload(q, jobs, alphas)
        is_jpeg = [out.suffix.lower() in (".jpg", ".jpeg") for _, out in jobs]
        # Verdicts and quality on the padded batch, so every call keeps the bucket's shape.
        current = _with_rows(padded, written)
        if not all(w is None or np.array_equal(w, q[j]) for j, w in enumerate(written)):
            # Lossy files: the protector's flags were for other bytes; judge what was decoded.
            flags = self.protector.verify(to_float01(current), labels)
        encoded = _with_rows(padded, list(q))
        for _ in range(self.jpeg_rounds if any(is_jpeg) else 0):
            # The encoder may have undone the protection: step on from what was encoded, against
            # the classifiers behind a differentiable JPEG round trip, and encode again.
            redo = [j for j, w in enumerate(written) if w is not None and is_jpeg[j] and not flags[j]]
            if not redo:
                break
            q2 = to_uint8(self.protector.refine_for_jpeg(keys, x01, to_float01(encoded), labels, self.jpeg_quality))
            self._rewrite(redo, q2, q2, encoded, written, jobs, alphas)
            current = _with_rows(padded, written)
            flags = self.protector.verify(to_float01(current), labels)
        p, s = _psnr_ssim(jnp.asarray(x01), jnp.asarray(to_float01(current)))
        for j, w in enumerate(written):
            if w is not None:
                src, out = jobs[j]
                ssim = float(s[j]) if np.isfinite(s[j]) else None  # absent, not raised, for tiny images
                self._finish(ProtectResult(src, out, protected=bool(flags[j]), psnr=float(p[j]), ssim=ssim))

    def _through_channel(self, jobs, keys, padded, alphas) -> None:
        """Protect through the social channel; judge the written files through the real channel's
        panel; give the images not protected with margin on every variant more steps through the
        channel, and write them again.

        A photo with a long side over :data:`WORK_MAX_SIDE` is attacked on a copy shrunk to it (the
        classifiers only ever see it shrunk further), and the change is carried back to every
        full-resolution pixel by bilinear upsampling, which never leaves the budget (its weights are
        non-negative and sum to one), then rounded to the lattice at full size.
        """
        n = len(jobs)
        h, w = padded.shape[1:3]
        eps = self.protector.eps
        work = platform_size(h, w, WORK_MAX_SIDE)
        if work is None:
            xa = to_float01(padded)
        else:  # the full-size batch never exists in float: each image is lifted on its own
            xa = to_float01(np.stack([np.asarray(Image.fromarray(im).resize((work[1], work[0]), Image.Resampling.BICUBIC)) for im in padded]))

        def to_full(qa):
            if work is None:
                return to_uint8(qa)
            return np.stack([to_uint8(_lift(to_float01(padded[j : j + 1]), xa[j : j + 1], qa[j : j + 1], eps, self.protector.min_psnr))[0] for j in range(len(padded))])

        qa, labels, _ = self.protector(keys, xa)
        qa = np.array(qa)  # updated per image by the rounds below
        q = to_full(qa)
        written = self._write_and_reload(q[:n], jobs, alphas)
        variants = panel(self.protector.channel, h, w)
        # The originals through the real channel, once: they do not change between rounds.
        clean_views = [apply_real_panel(padded[j], variants) for j in range(n)]
        leads = self._panel_leads(written, variants, clean_views, padded.shape[0])
        stalled: set[int] = set()
        for _ in range(self.channel_rounds):
            redo = [j for j in range(n) if written[j] is not None and j not in stalled and leads[j].min() <= self.protector.margin]
            if not redo:
                break
            before = {j: float(leads[j].min()) for j in redo}
            qa2 = self.protector.refine_channel(keys, xa, qa, labels)
            q2 = to_full(qa2)
            self._rewrite(redo, q2, qa2, qa, written, jobs, alphas)
            leads = self._panel_leads(written, variants, clean_views, padded.shape[0])
            # A round that did not raise an image's smallest lead will not on the next: its draws
            # already have the margin that the real variant lacks. Spend no more rounds on it.
            stalled |= {j for j in redo if written[j] is not None and float(leads[j].min()) <= before[j] + 0.1}
        for j, w_ in enumerate(written):
            if w_ is not None:
                src, out = jobs[j]
                p, s = _psnr_ssim_one(padded[j], w_)
                ok = leads[j] > 0.0
                self._finish(ProtectResult(
                    src, out, protected=bool(ok.all()), psnr=p, ssim=s,
                    variants_protected=int(ok.sum()), variants=len(variants),
                    unprotected_variants=tuple(v.label() for v, good in zip(variants, ok) if not good),
                ))  # fmt: skip

    def _panel_leads(self, written, variants, clean_views, bucket: int) -> list:
        """Per image, (V,) leads of its decoded file through each real variant (None where not
        written), each against the class the classifier gives the original through that same
        variant (``clean_views[j]``: image j's original through each variant): what an attacker
        taking that path would have inferred."""
        rows = [j for j, w in enumerate(written) if w is not None]
        if not rows:
            return [None] * len(written)
        m = len(variants)
        seen = {j: apply_real_panel(written[j], variants) for j in rows}
        groups = _by_shape([(r * m + i, v) for r in range(len(rows)) for i, v in enumerate(variants)])
        leads = np.zeros(len(rows) * m, np.float32)
        for shape, slots in groups.items():
            views = np.stack([seen[rows[slot // m]][slot % m] for slot, _ in slots])
            clean = np.stack([clean_views[rows[slot // m]][slot % m] for slot, _ in slots])
            # Padded to the batch's bucket: partial batches and later rounds reuse one program.
            size = bucket * (len(slots) // len(rows))
            labels = self.protector.top1(to_float01(pad_batch(clean, size)))
            found = self.protector.panel_leads(to_float01(pad_batch(views, size)), labels)
            leads[[slot for slot, _ in slots]] = found[: len(slots)]
        out: list = [None] * len(written)
        for r, j in enumerate(rows):
            out[j] = leads[r * m : (r + 1) * m]
        return out

    def _rewrite(self, redo, q, state_new, state, written, jobs, alphas) -> None:
        """Write images ``redo`` of the round's uint8 batch ``q`` again; where that worked, their
        rows of ``state`` (what the next round steps on from) take ``state_new``'s."""
        again = self._write_and_reload(q[redo], [jobs[j] for j in redo], [alphas[j] for j in redo])
        for j, w in zip(redo, again):
            written[j] = w
            if w is not None:
                state[j] = state_new[j]
            else:
                # The error is reported; the earlier round's file must not stay behind.
                staging_path(jobs[j][1]).unlink(missing_ok=True)

    def _write_and_reload(self, q, jobs, alphas) -> list:
        """Write each image to its staging file; the decoded bytes on disk per image (None where
        writing failed, with the error appended to the results)."""
        written = []
        for img, (src, out), alpha in zip(q, jobs, alphas):
            try:
                if self._is_input(out):
                    raise ImageWriteError(f"{out}: refusing to overwrite an input image")
                staged = write_image(staging_path(out), img, alpha, jpeg_quality=self.jpeg_quality)
                written.append(read_image(staged).rgb)  # the bytes on disk, decoded again
            except (ImageWriteError, ImageReadError) as e:
                self.results.append(ProtectResult(src, None, error=str(e)))
                written.append(None)
        return written


#: The fields of a result that the manifest records with each output.
_VERDICT = ("protected", "psnr", "ssim", "variants_protected", "variants", "unprotected_variants")
#: Under the social channel, photos with a longer side are attacked on a copy shrunk to this many
#: pixels (see :meth:`_Batch._through_channel`): the platform's smallest size, and 4.5 times the
#: attacker's 224, so nothing the classifiers can see is lost, while a 12-megapixel photo costs
#: an attack step on 0.9 megapixels.
WORK_MAX_SIDE = 1080
#: Images with more pixels than this get PSNR and SSIM computed in strips of rows.
_STRIP_PIXELS = 1 << 22


@partial(jax.jit, static_argnames=("eps", "min_psnr"))
def _lift(x01, xa, qa, eps, min_psnr=None):
    """Full-size (1, H, W, 3) ``x01`` plus the working-size change ``qa - xa`` upsampled
    bilinearly (weights >= 0 summing to 1: never beyond the change's own bound), on the lattice
    within ``eps``/255 of ``x01`` and at ``min_psnr`` dB or above."""
    delta = resize(qa - xa, x01.shape[1:3], "bilinear", quantise=False)
    return quantise(x01 + delta, x01, eps, min_psnr)


def _psnr_ssim_one(a: np.ndarray, b: np.ndarray) -> tuple[float, float | None]:
    """PSNR (dB) and SSIM (None under 11x11) of two (H, W, 3) uint8 images; large images in strips
    of rows, so that SSIM's filtered planes never exist at 12 megapixels."""
    h, w = a.shape[:2]
    if h * w <= _STRIP_PIXELS:
        p, s = _psnr_ssim(jnp.asarray(to_float01(a[None])), jnp.asarray(to_float01(b[None])))
        return float(p[0]), float(s[0]) if np.isfinite(s[0]) else None
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255.0**2
    psnr = float(10.0 * np.log10(1.0 / mse)) if mse > 0 else float("inf")
    rows = max(16, _STRIP_PIXELS // w)
    pad = metrics.SSIM_RADIUS
    total = count = 0.0
    for top in range(0, h - 2 * pad, rows):
        # Map rows top..top+rows-1 (valid filtering) need image rows top..top+rows-1+2*pad.
        stop = min(top + rows + 2 * pad, h)
        s = float(metrics.ssim(jnp.asarray(to_float01(a[None, top:stop])), jnp.asarray(to_float01(b[None, top:stop])))[0])
        k = stop - top - 2 * pad
        total, count = total + s * k, count + k
    return psnr, total / count


@jax.jit
def _psnr_ssim(a, b):
    """Per-image PSNR (dB) and SSIM (NaN where the images are too small for it) of (N, H, W, 3)
    batches in [0, 1]."""
    return metrics.psnr(a, b), metrics.ssim_or_nan(a, b)


def _by_shape(slots) -> dict:
    """(slot, variant) pairs grouped by the shape the variant's view hands the classifier."""
    from ppjax.ops.channel import VIEWS

    groups: dict = {}
    for slot, v in slots:
        groups.setdefault(VIEWS[v.view], []).append((slot, v))
    return groups


def _pixel_cap(image, max_batch_pixels: int) -> int:
    h, w = image.size
    return max(1, max_batch_pixels // max(1, h * w))


def _size_batches(loaded, max_batch: int, max_batch_pixels: int):
    """Indices of same-sized images in batches of at most ``max_batch`` images and
    ``max_batch_pixels`` pixels (at least one image each)."""
    for idx in group_batches(loaded, (im.rgb.shape for im in loaded), max_batch):
        cap = min(max_batch, _pixel_cap(loaded[idx[0]], max_batch_pixels))
        for start in range(0, len(idx), cap):
            yield idx[start : start + cap]


def _with_rows(padded: np.ndarray, written: list) -> np.ndarray:
    """``padded`` with row j replaced by ``written[j]`` (the decoded file) where there is one."""
    out = padded.copy()
    for j, w in enumerate(written):
        if w is not None:
            out[j] = w
    return out


def _stable_hash(text: str) -> int:
    """A process-independent 31-bit hash (Python's hash() is salted per run)."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF
