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
