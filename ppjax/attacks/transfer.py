"""Parts that help an attack transfer to classifiers it never saw; they compose with every method
built on :func:`ppjax.attacks.iterate`.

- **Input diversity** (Xie et al. 2019, DI-FGSM): at each step, with probability ``p``, the
  classifiers see the image shrunk by a random factor in ``[scale, 1]`` and placed at a random
  offset on a black canvas of the same size (the paper's resize-and-pad, at a static shape). Each
  image draws from its own key and the step, never from its batch.
- **Translation-invariant smoothing** (Dong et al. 2019, TI-FGSM): the gradient is convolved with a
  ``kernel`` x ``kernel`` Gaussian (sigma ``kernel / 6``, per channel) before the step rule.
- **Momentum** (Dong et al. 2018, MI-FGSM): L1-normalised gradients accumulated with ``decay``
  before the step rule.
- **Scale copies** (Lin et al. 2020, SI-NI-FGSM's scale invariance): the objective is averaged over
  ``scales`` copies of what the classifiers see, with pixel values divided by 1, 2, 4, ... (the
  lead, what counts as protected, is always that of the image itself). Each copy costs one more
  forward and backward pass.

:class:`Transfer` holds the settings; zero (one for ``scales``) switches a part off.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppjax.attacks.steps import normalise_l1

__all__ = ["Transfer", "diverse_inputs", "smooth_gradient", "with_transfer_steps"]


@dataclass(frozen=True)
class Transfer:
    """Transfer parts: ``diversity`` (probability per step, 0..1), ``diversity_scale`` (smallest
    shrink factor, 0..1), ``smoothing`` (Gaussian kernel side in pixels, odd; 0 off), ``momentum``
    (decay; 0 off), ``scales`` (copies the objective is averaged over; 1 off)."""

    diversity: float = 0.0
    diversity_scale: float = 0.85
    smoothing: int = 0
    momentum: float = 0.0
    scales: int = 1

    def __post_init__(self):
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity is a probability in 0..1, got {self.diversity}")
        if not 0.0 < self.diversity_scale <= 1.0:
            raise ValueError(f"diversity_scale must be in (0, 1], got {self.diversity_scale}")
        if self.smoothing < 0 or (self.smoothing and self.smoothing % 2 == 0):
            raise ValueError(f"smoothing is an odd kernel side in pixels (or 0), got {self.smoothing}")
        if self.momentum < 0:
            raise ValueError(f"momentum decay must be at least 0, got {self.momentum}")
        if self.scales < 1 or int(self.scales) != self.scales:
            raise ValueError(f"scales is a whole number of copies, at least 1, got {self.scales}")

    @property
    def active(self) -> bool:
        return bool(self.diversity or self.smoothing or self.momentum or self.scales > 1)


def diverse_inputs(x01: jnp.ndarray, keys: jax.Array, step, p: float, scale: float) -> jnp.ndarray:
    """(N, H, W, 3) ``x01``, each image with probability ``p`` shrunk (bilinear, antialiased) by a
    factor drawn from ``[scale, 1]`` and placed at a random offset on black; ``keys``: (N,)."""
    h, w = x01.shape[1:3]

    def one(img, key):
        k = jax.random.fold_in(jax.random.fold_in(key, step), 0xD1)
        k_use, k_scale, k_y, k_x = jax.random.split(k, 4)
        s = jnp.where(jax.random.uniform(k_use) < p, jax.random.uniform(k_scale, minval=scale, maxval=1.0), 1.0)
        ty = jax.random.uniform(k_y) * (1.0 - s) * h
        tx = jax.random.uniform(k_x) * (1.0 - s) * w
        moved = jax.image.scale_and_translate(img, img.shape, (0, 1), jnp.stack([s, s]), jnp.stack([ty, tx]), "linear", antialias=True)
        return jnp.where(s < 1.0, moved, img)  # exactly the image when not drawn

    return jax.vmap(one)(x01, keys)


def _gaussian(kernel: int) -> np.ndarray:
    r = np.arange(kernel, dtype=np.float64) - (kernel - 1) / 2
    g = np.exp(-0.5 * (r / (kernel / 6.0)) ** 2)
    k2 = np.outer(g, g)
    return (k2 / k2.sum()).astype(np.float32)


def smooth_gradient(kernel: int) -> optax.GradientTransformation:
    """TI's smoothing: each channel of the (N, H, W, 3) gradient convolved with a ``kernel`` x
    ``kernel`` Gaussian ('same' size, zeros beyond the border)."""
    weights = jnp.asarray(np.tile(_gaussian(kernel)[:, :, None, None], (1, 1, 1, 3)))  # HWIO, depthwise

    def update(g, state, params=None):
        out = jax.lax.conv_general_dilated(
            g, weights.astype(g.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g.shape[-1]
        )
        return out, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def with_transfer_steps(rule: optax.GradientTransformation, transfer: Transfer | None) -> optax.GradientTransformation:
    """``rule`` after TI smoothing and momentum accumulation (each only where switched on)."""
    if transfer is None or not (transfer.smoothing or transfer.momentum):
        return rule
    parts = []
    if transfer.smoothing:
        parts.append(smooth_gradient(transfer.smoothing))
    if transfer.momentum:
        parts += [normalise_l1(), optax.trace(decay=transfer.momentum, nesterov=False)]
    return optax.chain(*parts, rule)
