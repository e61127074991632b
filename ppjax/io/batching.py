"""Static shapes for jit: group images by size, pad batches to a few bucket sizes.

A jitted function compiles once per input shape. Padding every batch to a power-of-two bucket
(at most ``max_batch``) means a folder of 10,000 equally sized photos compiles at most
log2(max_batch) + 1 programs instead of one per odd-sized remainder.
"""

from __future__ import annotations

from typing import Hashable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def bucket_size(n: int, max_batch: int) -> int:
    """Smallest power of two >= ``n``, capped at ``max_batch`` (n in 1..max_batch)."""
    if not 1 <= n <= max_batch:
        raise ValueError(f"batch of {n} does not fit max_batch={max_batch}")
    return min(1 << (n - 1).bit_length(), max_batch)


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Pad axis 0 of ``x`` to ``size`` by repeating the last element (real pixels, no NaN risk)."""
    n = x.shape[0]
    if n == size:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)], axis=0)


def group_batches(items: Sequence[T], key: Iterable[Hashable], max_batch: int) -> Iterator[list[int]]:
    """Indices of ``items`` in batches of at most ``max_batch`` sharing the same ``key`` (e.g. shape)."""
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(key):
        groups.setdefault(k, []).append(i)
    for idx in groups.values():
        for start in range(0, len(idx), max_batch):
            yield idx[start : start + max_batch]


def run_batched(fn, images: Sequence[np.ndarray], max_batch: int) -> list:
    """``fn`` over uint8 (H, W, 3) images of any sizes, in shape-grouped, bucket-padded batches.

    ``fn`` maps a (B, H, W, 3) float32 [0, 1] batch to an array with a leading axis B; the result
    is one row per input image, in input order. Where ``fn`` fails on a group (a size the model
    cannot take), each of its images gets the exception instead of a row, and the rest go on.
    """
    rows: list = [None] * len(images)
    for idx in group_batches(images, (im.shape for im in images), max_batch):
        x = np.stack([images[i] for i in idx]).astype(np.float32) / np.float32(255.0)
        try:
            out = np.asarray(fn(pad_batch(x, bucket_size(len(idx), max_batch))))
        except Exception as e:  # noqa: BLE001 - reported per image by the caller, never ends the run
            for i in idx:
                rows[i] = e
            continue
        for j, i in enumerate(idx):
            rows[i] = out[j]
    return rows


def decode_in_chunks(files: Sequence, chunk: int):
    """Yield, ``chunk`` files at a time, a list of each file's ``LoadedImage`` or ``ImageReadError``
    (in input order), so that a folder of thousands of photos never sits in memory at once."""
    from ppjax.io.images import ImageReadError, read_image

    for start in range(0, len(files), chunk):
        loaded = []
        for f in files[start : start + chunk]:
            try:
                loaded.append(read_image(f))
            except ImageReadError as e:
                loaded.append(e)
        yield loaded


def map_image_files(fn, files: Sequence, max_batch: int, prepare=None, chunk: int | None = None):
    """Yield ``(LoadedImage, row)`` or the ``ImageReadError`` of each file, in input order.

    Files are decoded ``chunk`` at a time (default 4 batches) so memory stays bounded on large
    folders; ``prepare`` may transform each decoded uint8 image (e.g. resize) before batching.
    """
    from ppjax.io.images import ImageReadError

    for loaded in decode_in_chunks(files, chunk or 4 * max_batch):
        ok = [im for im in loaded if not isinstance(im, ImageReadError)]
        prepared = []
        for im in ok:
            try:
                prepared.append(prepare(im.rgb) if prepare else im.rgb)
            except Exception as e:  # noqa: BLE001 - as for a failing batch: this image only
                prepared.append(e)
        shaped = [p for p in prepared if not isinstance(p, Exception)]
        rows = iter(run_batched(fn, shaped, max_batch))
        results = iter([p if isinstance(p, Exception) else next(rows) for p in prepared])
        for item in loaded:
            if isinstance(item, ImageReadError):
                yield item
                continue
            row = next(results)
            if isinstance(row, Exception):
                h, w = item.size
                yield ImageReadError(item.path, f"cannot be processed at {w}x{h} pixels ({type(row).__name__}: {row})")
            else:
                yield item, row
