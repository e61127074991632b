"""Benchmarks that print their figures: JAX against PyTorch on the same weights
(:mod:`.frameworks`, needs PyTorch) and protection that survives JPEG (:mod:`.jpeg`)."""

import enum


class DType(str, enum.Enum):
    """Compute dtype of both frameworks in ``ppjax bench`` (PyTorch through autocast)."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
