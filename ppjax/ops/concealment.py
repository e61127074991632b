"""Where a perturbation shows least: the map of the first "Concealed FGSM" method (Linardos et al.,
MediaEval 2019), computed without a learned model.

The map is high on textured, non-salient pixels and zero on flat or salient ones:

* texture: the Sobel gradient magnitude of the luminance, spread by a Gaussian blur (sigma 10
  pixels), divided by its maximum, with every pixel below the image's mean set to zero;
* saliency: the spectral residual of Hou & Zhang (CVPR 2007), a model-free stand-in for the learned
  saliency network of the paper, scaled to [0, 1]; the map keeps ``1 - saliency``.

All functions take (N, H, W, 3) pixels in [0, 1] and return (N, H, W, 1) maps in [0, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["concealment_map", "gaussian_blur", "sobel_magnitude", "spectral_residual_saliency", "texture_map"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as in PIL's "L" conversion


def _luminance(x01: jnp.ndarray) -> jnp.ndarray:
    return jnp.tensordot(x01, jnp.asarray(_LUMA, x01.dtype), axes=([-1], [0]))[..., None]


def _filter_same(x: jnp.ndarray, kernel: np.ndarray) -> jnp.ndarray:
    """2-D correlation of (N, H, W, 1) with a small kernel, edges replicated, same size out."""
    kh, kw = kernel.shape
    xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)), mode="edge")
    w = jnp.asarray(kernel, x.dtype)[:, :, None, None]
    return jax.lax.conv_general_dilated(xp, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def gaussian_blur(x: jnp.ndarray, sigma: float) -> jnp.ndarray:
    """Separable Gaussian blur of (N, H, W, 1), radius 3 sigma, edges replicated; sigma in pixels."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g = (g / g.sum()).astype(np.float32)
    return _filter_same(_filter_same(x, g[:, None]), g[None, :])


def sobel_magnitude(x01: jnp.ndarray) -> jnp.ndarray:
    """Sobel gradient magnitude of the luminance, (N, H, W, 1)."""
    gx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    y = _luminance(x01)
    dx, dy = _filter_same(y, gx), _filter_same(y, gx.T)
    return jnp.sqrt(dx * dx + dy * dy)


def _scale01(m: jnp.ndarray) -> jnp.ndarray:
    lo = jnp.min(m, axis=(1, 2, 3), keepdims=True)
    hi = jnp.max(m, axis=(1, 2, 3), keepdims=True)
    return jnp.where(hi > lo, (m - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)


def texture_map(x01: jnp.ndarray, sigma: float = 10.0) -> jnp.ndarray:
    """Blurred Sobel map over its maximum; pixels below the image's mean are zero."""
    e = gaussian_blur(sobel_magnitude(x01), sigma)
    e = e / jnp.maximum(jnp.max(e, axis=(1, 2, 3), keepdims=True), 1e-12)
    return jnp.where(e >= jnp.mean(e, axis=(1, 2, 3), keepdims=True), e, 0.0)


def spectral_residual_saliency(x01: jnp.ndarray, side: int = 64) -> jnp.ndarray:
    """Spectral residual saliency (Hou & Zhang 2007), computed at ``side`` pixels wide as in the
    paper, brought back to the image's size and scaled to [0, 1]."""
    n, h, w, _ = x01.shape
    small = (max(8, round(side * h / w)), side)
    y = jax.image.resize(_luminance(x01)[..., 0], (n, *small), "linear")
    spectrum = jnp.fft.fft2(y)
    log_amp = jnp.log(jnp.abs(spectrum) + 1e-8)
    box = np.full((3, 3), 1.0 / 9.0, np.float32)
    residual = log_amp - _filter_same(log_amp[..., None], box)[..., 0]
    s = jnp.abs(jnp.fft.ifft2(jnp.exp(residual + 1j * jnp.angle(spectrum)))) ** 2
    s = gaussian_blur(s[..., None].astype(jnp.float32), 8.0 * side / 64)  # Hou & Zhang: sigma 8 at 64 px
    s = jax.image.resize(s, (n, h, w, 1), "linear")
    return _scale01(s)


def concealment_map(x01: jnp.ndarray, sigma: float = 10.0) -> jnp.ndarray:
    """Texture map times reverse saliency, divided by its maximum (so the best spot takes full steps)."""
    m = texture_map(x01, sigma) * (1.0 - spectral_residual_saliency(x01))
    m = jnp.clip(m, 0.0, None)  # resizing can leave -1e-8
    return m / jnp.maximum(jnp.max(m, axis=(1, 2, 3), keepdims=True), 1e-12)
