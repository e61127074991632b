"""Protect photos: attack, quantise to uint8, verify on the bytes that will be written, write.

What is written is what was verified. The attack works in float; the output is rounded to the uint8
lattice (staying inside the budget), the classifiers are run again on exactly those bytes, and an
image that is not protected with margin on the lattice (rounding un-protected it, or the attack's
steps were not enough) gets up to ``lattice_steps`` more sign steps of 1/255 *on the lattice*. With
JPEG output the verdict is taken on the decoded JPEG; an image the encoder un-protected gets
further lattice steps against the classifiers behind a differentiable JPEG round trip
(:mod:`ppjax.jpeg`) and is encoded again, for up to ``jpeg_rounds`` rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppjax import attacks, metrics
from ppjax.batching import bucket_size, group_batches, pad_batch
from ppjax.io import ImageReadError, ImageWriteError, read_image, write_image

__all__ = ["quantise", "Protector", "ProtectResult", "protect_files"]


def lattice_radius(eps: float) -> float:
    """The largest whole number of 1/255 steps inside a budget of ``eps``/255."""
    return float(np.floor(eps + 1e-6))


def quantise(x01: jnp.ndarray, x0_uint8: jnp.ndarray, eps: float) -> jnp.ndarray:
    """Round to uint8 values without leaving the L-infinity budget ``eps``/255 or [0, 255] (float array)."""
    r = lattice_radius(eps)
    x0 = x0_uint8.astype(jnp.float32)
    return jnp.clip(jnp.clip(jnp.rint(x01 * 255.0), x0 - r, x0 + r), 0.0, 255.0)


@dataclass
class Protector:
    """Jitted protection of (N, H, W, 3) uint8 batches against ``targets``.

    ``method`` is a name in :data:`ppjax.attacks.METHODS`. Each target is attacked away from its
    own top-1 class on the original image. ``terms`` (appeal, perceptual penalties) go to the
    attack; the lattice refinement only looks at the classifiers.
    """

    targets: Sequence[attacks.Target]
    method: str = "pgd"
    eps: float = 4.0
    steps: int = 20
    early_stop: bool = True
    lattice_steps: int = 10
    #: Logit lead at which an image counts as protected with margin and stops changing. A margin
    #: keeps the result protected across frameworks and encoders: at margin 0 images sit on the
    #: decision boundary, where a 1e-5 difference between JAX and ONNX Runtime flips them back.
    margin: float = 2.0
    terms: Sequence[attacks.Term] = ()
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        make = attacks.METHODS[self.method]
        # The weights go into the compiled programs as arguments, not as captured constants: the
        # persistent cache then holds a few MB per image size rather than the models' size. On
        # the device once, so that NumPy weights are not copied over again on every call.
        self._variables = jax.device_put(attacks.variables_of(self.targets, self.terms))

        def labels_of(targets, x01):
            return tuple(jnp.argmax(t.apply(t.variables, x01), axis=-1) for t in targets)

        def lead(targets, x01, labels):
            return attacks.objective_and_lead(targets, x01, labels)[1]

        def status(variables, x01, labels):
            return lead(self._bound(variables)[0], x01, labels) > 0.0

        def run(variables, key, x_uint8):
            targets, terms = self._bound(variables)
            attack = make(
                targets, eps=self.eps, steps=self.steps, early_stop=self.early_stop, stop_margin=self.margin, terms=terms, **self.options
            )
            refine = self._lattice_refinement(targets)
            x0 = x_uint8.astype(jnp.float32) / 255.0
            labels = labels_of(targets, x0)
            q = quantise(attack(key, x0, labels), x_uint8, self.eps)
            q_lead = lead(targets, q / 255.0, labels)

            def refined(q):
                # Sign steps of 1/255 from the quantised image; images already protected with
                # margin are left as they are (early stop).
                r = quantise(refine(key, x0, labels, start=q / 255.0), x_uint8, self.eps)
                return r, lead(targets, r / 255.0, labels)

            # The refinement's first step costs a gradient even when every image is already
            # protected with margin on the lattice (the usual case): skip it then.
            q, q_lead = jax.lax.cond(jnp.any(q_lead <= self.margin), refined, lambda q: (q, q_lead), q)
            return q.astype(jnp.uint8), labels, q_lead > 0.0

        self._run = jax.jit(run)
        self._status = jax.jit(status)
        self._for_jpeg = {}

    def _bound(self, variables):
        """(targets, terms) holding ``variables``, the traced weights inside a jitted function."""
        return attacks.bind(self.targets, self.terms, variables)

    def _lattice_refinement(self, targets):
        return attacks.iterate(
            targets, attacks.sign_step(), attacks.linf_ball(lattice_radius(self.eps)),
            steps=self.lattice_steps, step_size=1.0, stop_margin=self.margin,
        )  # fmt: skip

    def __call__(self, key: jax.Array, x_uint8: np.ndarray):
        """(protected uint8 batch, labels per target, protected-as-computed flags).

        ``key``: one key for the batch, or (N,) keys, one per image.
        """
        q, labels, ok = self._run(self._variables, key, jnp.asarray(x_uint8))
        return np.asarray(q), labels, np.asarray(ok)

    def refine_for_jpeg(self, key: jax.Array, x_uint8: np.ndarray, start_uint8: np.ndarray, labels, quality: int):
        """More lattice steps from ``start_uint8`` (what was encoded last), within the budget around
        the originals ``x_uint8``, against the classifiers *behind* a JPEG round trip at ``quality``
        (:func:`ppjax.jpeg.jpeg_round_trip`): the uint8 batch to encode. The verdict is left to
        :meth:`verify` on the decoded file, not to the differentiable stand-in."""
        if quality not in self._for_jpeg:
            from ppjax.jpeg import jpeg_round_trip

            def refine_from(variables, key, x_uint8, start_uint8, labels):
                behind = tuple(
                    attacks.Target(lambda v, x, apply=t.apply: apply(v, jpeg_round_trip(x, quality)), t.variables, t.objective)
                    for t in self._bound(variables)[0]
                )
                refine = self._lattice_refinement(behind)
                x0 = x_uint8.astype(jnp.float32) / 255.0
                q = quantise(refine(key, x0, labels, start=start_uint8.astype(jnp.float32) / 255.0), x_uint8, self.eps)
                return q.astype(jnp.uint8)

            self._for_jpeg[quality] = jax.jit(refine_from)
        refine = self._for_jpeg[quality]
        return np.asarray(refine(self._variables, key, jnp.asarray(x_uint8), jnp.asarray(start_uint8), labels))

    def verify(self, x_uint8: np.ndarray, labels) -> np.ndarray:
        """Protected flags for uint8 images (e.g. decoded from the written files)."""
        return np.asarray(self._status(self._variables, jnp.asarray(x_uint8, jnp.float32) / 255.0, labels))


@dataclass
class ProtectResult:
    source: Path
    output: Path | None
    protected: bool | None = None  # as written (after JPEG decoding for JPEG output)
    skipped: str | None = None  # why nothing was written (existing output)
    error: str | None = None
    psnr: float | None = None
    ssim: float | None = None


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
    done_count = 0
    for src, out in jobs:
        if out.exists() and not overwrite:
            results.append(ProtectResult(src, out, skipped="output exists (use --overwrite)"))
            done_count += 1
        else:
            pending.append((src, out))
    if progress:
        progress(done_count)
    sources = [src for src, _ in jobs]
    # Decoded a chunk at a time, so a folder of thousands of photos does not sit in memory at once.
    for first in range(0, len(pending), chunk):
        todo, loaded = [], []
        for src, out in pending[first : first + chunk]:
            try:
                loaded.append(read_image(src))
                todo.append((src, out))
            except ImageReadError as e:
                results.append(ProtectResult(src, None, error=str(e)))
                done_count += 1
        for idx in group_batches(loaded, (im.rgb.shape for im in loaded), max_batch):
            batch = np.stack([loaded[i].rgb for i in idx])
            size = bucket_size(len(idx), max_batch)
            base = jax.random.key(seed)
            keys = jnp.stack([jax.random.fold_in(base, _stable_hash(str(todo[i][0]))) for i in idx])
            keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], size - len(idx), axis=0)])
            padded = pad_batch(batch, size)
            q, labels, flags = protector(keys, padded)
            written = _write_and_reload(q[: len(idx)], [todo[i] for i in idx], [loaded[i].alpha for i in idx], jpeg_quality, sources, results)
            is_jpeg = [todo[i][1].suffix.lower() in (".jpg", ".jpeg") for i in idx]
            # Verdicts and quality on the padded batch, so every call keeps the bucket's shape.
            current = _with_rows(padded, written)
            if not all(w is None or np.array_equal(w, q[j]) for j, w in enumerate(written)):
                # Lossy files: the protector's flags were for other bytes; judge what was decoded.
                flags = protector.verify(current, labels)
            encoded = _with_rows(padded, list(q[: len(idx)]))
            for _ in range(jpeg_rounds if any(is_jpeg) else 0):
                # The encoder may have undone the protection: step on from what was encoded, against
                # the classifiers behind a differentiable JPEG round trip, and encode again.
                redo = [j for j, w in enumerate(written) if w is not None and is_jpeg[j] and not flags[j]]
                if not redo:
                    break
                q2 = protector.refine_for_jpeg(keys, padded, encoded, labels, jpeg_quality)
                again = _write_and_reload(q2[redo], [todo[idx[j]] for j in redo], [loaded[idx[j]].alpha for j in redo], jpeg_quality, sources, results)
                for j, w in zip(redo, again):
                    written[j] = w
                    if w is not None:
                        encoded[j] = q2[j]
                    else:
                        # The error is reported; the earlier round's file must not stay behind,
                        # or a resumed run would skip this image as done.
                        todo[idx[j]][1].unlink(missing_ok=True)
                current = _with_rows(padded, written)
                flags = protector.verify(current, labels)
            p, s = _psnr_ssim(jnp.asarray(padded, jnp.float32) / 255.0, jnp.asarray(current, jnp.float32) / 255.0)
            for j, w in enumerate(written):
                if w is not None:
                    src, out = todo[idx[j]]
                    results.append(ProtectResult(src, out, protected=bool(flags[j]), psnr=float(p[j]), ssim=float(s[j])))
            done_count += len(idx)
            if progress:
                progress(done_count)
    order = {src: n for n, (src, _) in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.source])


@jax.jit
def _psnr_ssim(a, b):
    """Per-image PSNR (dB) and SSIM of (N, H, W, 3) batches in [0, 1]."""
    return metrics.psnr(a, b), metrics.ssim(a, b)


def _with_rows(padded: np.ndarray, written: list) -> np.ndarray:
    """``padded`` with row j replaced by ``written[j]`` (the decoded file) where there is one."""
    out = padded.copy()
    for j, w in enumerate(written):
        if w is not None:
            out[j] = w
    return out


def _write_and_reload(q, jobs, alphas, jpeg_quality, sources, results) -> list:
    """Write each image; return the decoded bytes on disk per image (None where writing failed,
    with the error appended to ``results``)."""
    written = []
    for img, (src, out), alpha in zip(q, jobs, alphas):
        try:
            write_image(out, img, alpha, jpeg_quality=jpeg_quality, sources=sources)
            written.append(read_image(out).rgb)  # the bytes on disk, decoded again
        except (ImageWriteError, ImageReadError) as e:
            results.append(ProtectResult(src, None, error=str(e)))
            written.append(None)
    return written


def _stable_hash(text: str) -> int:
    """A process-independent 31-bit hash (Python's hash() is salted per run)."""
    import zlib

    return zlib.crc32(text.encode()) & 0x7FFFFFFF

