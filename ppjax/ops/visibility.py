"""How a change shows, beyond PSNR: grain, colourfulness and contrast, on the host (NumPy), for
photos of any size.

- *Grain* (1/255 units): the RMS of the change's high-pass part (the change minus its Gaussian
  blur of sigma 1.5 px) over the flattest quarter of the photo (lowest local 5x5 luma standard
  deviation of the original), over all three channels. Pixel noise puts grain into sky and walls;
  an edit changes them smoothly. Sign noise of 4/255 gives about 3.7, a tone curve under 1.
- *Colourfulness*: Hasler and Suesstrunk (2003), M = sigma_rgyb + 0.3 mu_rgyb on 0..255 values.
- *RMS contrast*: the standard deviation of luma (Rec. 709 weights, values in [0, 1]).

Inputs are (H, W, 3) uint8 arrays.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_taps", "grain", "colourfulness", "rms_contrast", "visibility"]

_LUMA = np.asarray((0.2126, 0.7152, 0.0722), np.float32)


def _filter(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``a`` (H, W, ...) convolved with the 1-D ``kernel`` along both image axes, edges reflected."""
    r = len(kernel) // 2
    for axis in (0, 1):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r, r)
        padded = np.pad(a, pad, mode="reflect" if a.shape[axis] > r else "edge")
        n = a.shape[axis]
        a = sum(w * np.take(padded, np.arange(k, k + n), axis=axis) for k, w in enumerate(kernel))
    return a


def gaussian_taps(sigma: float) -> np.ndarray:
    """(2 ceil(3 sigma) + 1,) float32 taps of a Gaussian of ``sigma`` pixels, summing to 1."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def grain(original: np.ndarray, changed: np.ndarray, sigma: float = 1.5) -> float:
    """The change's high-pass RMS over the original's flattest quarter, in 1/255."""
    d = changed.astype(np.float32) - original.astype(np.float32)
    high = d - _filter(d, gaussian_taps(sigma))
    y = original.astype(np.float32) @ _LUMA
    box = np.full(5, 0.2, np.float32)
    local_std = np.sqrt(np.maximum(_filter(y * y, box) - _filter(y, box) ** 2, 0.0))
    flat = local_std <= np.quantile(local_std, 0.25)
    return float(np.sqrt(np.mean(high[flat] ** 2)))


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness of a uint8 photo."""
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def rms_contrast(rgb: np.ndarray) -> float:
    """The standard deviation of luma, values in [0, 1]."""
    return float((rgb.astype(np.float32) / 255.0 @ _LUMA).std())


def visibility(original: np.ndarray, changed: np.ndarray) -> dict:
    """Grain, and colourfulness and RMS contrast before and after, for one photo."""
    return {
        "grain_255": grain(original, changed),
        "colourfulness_before": colourfulness(original), "colourfulness_after": colourfulness(changed),
        "rms_contrast_before": rms_contrast(original), "rms_contrast_after": rms_contrast(changed),
    }  # fmt: skip
