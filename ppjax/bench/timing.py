"""Timing a jitted call: the first call (compiling) apart, then the median of repeated calls."""

from __future__ import annotations

import time

import jax
import numpy as np

__all__ = ["median_seconds"]


def median_seconds(fn, *args, repeats: int = 5) -> tuple[float, float]:
    """(median seconds of ``repeats`` calls of ``fn(*args)``, seconds of the first call, which
    compiles), each call waited on to the end (``jax.block_until_ready``)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), first
