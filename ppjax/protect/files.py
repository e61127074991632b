"""Protect image files: decode, batch, protect, write, read back, judge what was written.

uint8 lives only here, at the files' edge; the :class:`~ppjax.protect.protector.Protector` sees
float [0, 1] batches on the uint8 lattice. With JPEG output the verdict is taken on the decoded
file; an image the encoder un-protected gets further lattice steps against the classifiers behind
a differentiable JPEG round trip and is encoded again, for up to ``jpeg_rounds`` rounds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.io.batching import bucket_size, decode_in_chunks, group_batches, pad_batch
from ppjax.io.images import ImageReadError, ImageWriteError, read_image, to_float01, to_uint8, write_image
from ppjax.ops import metrics
from ppjax.protect.protector import Protector

__all__ = ["ProtectResult", "protect_files"]


@dataclass
class ProtectResult:
    source: Path
    output: Path | None
    protected: bool | None = None  # as written (after JPEG decoding for JPEG output)
    skipped: str | None = None  # why nothing was written (existing output)
    error: str | None = None
    psnr: float | None = None  # dB
    ssim: float | None = None  # None where the image is smaller than SSIM's 11x11 window


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
) -> list[ProtectResult]:
    """Protect each (input, output) pair; outputs that already exist are kept unless ``overwrite``.

    Images are grouped by size and padded to bucket sizes so each shape compiles a few times at
    most. Each image's key comes from ``seed`` and its input path, so its random draws do not
    depend on the batch it lands in: the same inputs, seed and batch size give the same bytes,
    and a resumed run draws the same random starts. (Its bytes can still differ in rare pixels
    when the batch differs: a batch of another size is computed in another float order.)
    Inputs are decoded ``chunk`` at a time; batches are formed within a chunk.
    """
    results: list[ProtectResult] = []
    pending = []
    for src, out in jobs:
        if out.exists() and not overwrite:
            results.append(ProtectResult(src, out, skipped="output exists (use --overwrite)"))
        else:
            pending.append((src, out))
    done_count = len(results)
    if progress:
        progress(done_count)
    batch = _Batch(protector, seed, max_batch, jpeg_quality, jpeg_rounds, [src for src, _ in jobs], results)
    for first, decoded in zip(range(0, len(pending), chunk), decode_in_chunks([src for src, _ in pending], chunk)):
        todo, loaded = [], []
        for job, item in zip(pending[first : first + chunk], decoded):
            if isinstance(item, ImageReadError):
                results.append(ProtectResult(job[0], None, error=str(item)))
                done_count += 1
            else:
                todo.append(job)
                loaded.append(item)
        for idx in group_batches(loaded, (im.rgb.shape for im in loaded), max_batch):
            reported = len(results)
            try:
                batch.protect([todo[i] for i in idx], [loaded[i] for i in idx])
            except Exception as e:  # noqa: BLE001 - one odd size must never end the run
                h, w = loaded[idx[0]].size
                done = {r.source for r in results[reported:]}  # written (or failed) before the error
                for src, _ in (todo[i] for i in idx):
                    if src not in done:
                        results.append(ProtectResult(src, None, error=f"{src}: cannot be protected at {w}x{h} pixels ({type(e).__name__}: {e})"))
            done_count += len(idx)
            if progress:
                progress(done_count)
    order = {src: n for n, (src, _) in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.source])


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

    def protect(self, jobs, images) -> None:
        n = len(jobs)
        size = bucket_size(n, self.max_batch)
        base = jax.random.key(self.seed)
        keys = jnp.stack([jax.random.fold_in(base, _stable_hash(str(src))) for src, _ in jobs])
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], size - n, axis=0)])
        padded = pad_batch(np.stack([im.rgb for im in images]), size)
        x01 = to_float01(padded)
        q01, labels, flags = self.protector(keys, x01)
        q = to_uint8(q01[:n])
        alphas = [im.alpha for im in images]
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
            again = self._write_and_reload(q2[redo], [jobs[j] for j in redo], [alphas[j] for j in redo])
            for j, w in zip(redo, again):
                written[j] = w
                if w is not None:
                    encoded[j] = q2[j]
                else:
                    # The error is reported; the earlier round's file must not stay behind, or a
                    # resumed run would skip this image as done.
                    jobs[j][1].unlink(missing_ok=True)
            current = _with_rows(padded, written)
            flags = self.protector.verify(to_float01(current), labels)
        p, s = _psnr_ssim(jnp.asarray(x01), jnp.asarray(to_float01(current)))
        for j, w in enumerate(written):
            if w is not None:
                src, out = jobs[j]
                ssim = float(s[j]) if np.isfinite(s[j]) else None  # absent, not raised, for tiny images
                self.results.append(ProtectResult(src, out, protected=bool(flags[j]), psnr=float(p[j]), ssim=ssim))

    def _write_and_reload(self, q, jobs, alphas) -> list:
        """Write each image; the decoded bytes on disk per image (None where writing failed, with
        the error appended to the results)."""
        written = []
        for img, (src, out), alpha in zip(q, jobs, alphas):
            try:
                write_image(out, img, alpha, jpeg_quality=self.jpeg_quality, sources=self.sources)
                written.append(read_image(out).rgb)  # the bytes on disk, decoded again
            except (ImageWriteError, ImageReadError) as e:
                self.results.append(ProtectResult(src, None, error=str(e)))
                written.append(None)
        return written


@jax.jit
def _psnr_ssim(a, b):
    """Per-image PSNR (dB) and SSIM (NaN where the images are too small for it) of (N, H, W, 3)
    batches in [0, 1]."""
    return metrics.psnr(a, b), metrics.ssim_or_nan(a, b)


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
