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
- **Skip gradient** (Wu et al. 2020, SGM): the gradient through each residual block's branch is
  scaled by ``skip_gradient`` (gamma < 1), so that it leans on the identity paths; the forward
  pass is unchanged. It is a property of the attacked networks' backward pass, applied where the
  targets are built (:meth:`ppjax.models.Model.with_skip_gradient`); networks without residual
  blocks are attacked as they are.
- **Ghost networks** (Li et al., AAAI 2020): at each step every residual block's skip path is
  multiplied by a factor drawn from [1 - ``ghost``, 1 + ``ghost``] (per image, block, step and
  draw; :class:`ppjax.models.layers.Ghost`), so that the attack meets a new member of a family of
  networks made from each attacked one at every step, at no extra cost. Unlike the skip gradient
  it changes the forward pass, so the step's lead (the early stop) is the ghost's; what counts as
  protected is always judged on the networks themselves afterwards.
- **Spectrum simulation** (Long et al., ECCV 2022, SSA): at each step the classifiers see the image
  with Gaussian noise of ``spectrum_noise``/255 added and each of its 2-D DCT coefficients (per
  channel) multiplied by a factor drawn from [1 - ``spectrum``, 1 + ``spectrum``], as if a model
  of another design, which weighs frequencies differently, looked at it. As in the paper the
  gradient is taken at the transformed image and used as the image's own (no backward pass through
  the transform). One draw a step, not the paper's 20 a step: the steps' momentum averages them.
- **Mirror** (a horizontal flip, one of the transforms of the structure-invariant and block-shuffle
  attacks, Wang et al. 2023): at each step, with probability ``flip``, the classifiers see the image
  mirrored left to right (within each photo's extent on its canvas), so that the perturbation must
  work on the mirrored scene too, as trained classifiers, which learn with flips, see both alike.
  The gradient is mirrored back (the flip's exact transpose), at no extra cost.

:class:`Transfer` holds the settings; zero (one for ``scales``) switches a part off.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppjax.attacks.steps import normalise_l1

__all__ = ["Transfer", "diverse_inputs", "ghost_draws", "mirror_inputs", "smooth_gradient", "spectrum_inputs", "with_transfer_steps"]


@dataclass(frozen=True)
class Transfer:
    """Transfer parts: ``diversity`` (probability per step, 0..1), ``diversity_scale`` (smallest
    shrink factor, 0.75..1), ``smoothing`` (Gaussian kernel side in pixels, odd; 0 off), ``momentum``
    (decay; 0 off), ``scales`` (copies the objective is averaged over; 1 off), ``skip_gradient``
    (SGM's gamma on residual branches, in (0, 1]; 1 off), ``ghost`` (the half width of the ghost
    networks' skip factors, in [0, 0.5]; 0 off), ``spectrum`` (the half width of SSA's DCT
    coefficient factors, in [0, 1); 0 off), ``spectrum_noise`` (its Gaussian noise's standard
    deviation, in 1/255) and ``flip`` (the probability per step of a mirrored view, 0..1; 0 off)."""

    diversity: float = 0.0
    diversity_scale: float = 0.85
    smoothing: int = 0
    momentum: float = 0.0
    scales: int = 1
    skip_gradient: float = 1.0
    ghost: float = 0.0
    spectrum: float = 0.0
    spectrum_noise: float = 4.0
    flip: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity is a probability in 0..1, got {self.diversity}")
        if not 0.75 <= self.diversity_scale <= 1.0:
            raise ValueError(f"diversity_scale must be in [0.75, 1] (the shrink's resampling has 4 taps), got {self.diversity_scale}")
        if self.smoothing < 0 or (self.smoothing and self.smoothing % 2 == 0):
            raise ValueError(f"smoothing is an odd kernel side in pixels (or 0), got {self.smoothing}")
        if self.momentum < 0:
            raise ValueError(f"momentum decay must be at least 0, got {self.momentum}")
        if self.scales < 1 or int(self.scales) != self.scales:
            raise ValueError(f"scales is a whole number of copies, at least 1, got {self.scales}")
        if not 0.0 < self.skip_gradient <= 1.0:
            raise ValueError(f"skip_gradient is SGM's gamma in (0, 1] (1: off), got {self.skip_gradient}")
        if not 0.0 <= self.ghost <= 0.5:
            raise ValueError(f"ghost is the half width of the skip factors' range, in [0, 0.5] (0: off), got {self.ghost}")
        if not 0.0 <= self.spectrum < 1.0:
            raise ValueError(f"spectrum is the half width of the DCT factors' range, in [0, 1) (0: off), got {self.spectrum}")
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"flip is a probability in 0..1, got {self.flip}")
        if self.spectrum_noise < 0:
            raise ValueError(f"spectrum_noise is a standard deviation in 1/255, at least 0, got {self.spectrum_noise}")

    @property
    def active(self) -> bool:
        return bool(self.diversity or self.smoothing or self.momentum or self.scales > 1 or self.skip_gradient != 1.0 or self.ghost or self.spectrum or self.flip)


def diverse_inputs(x01: jnp.ndarray, keys: jax.Array, step, p: float, scale: float, valid=None) -> jnp.ndarray:
    """(N, H, W, 3) ``x01``, each image with probability ``p`` shrunk (linear, antialiased, as
    ``jax.image.scale_and_translate``) by a factor drawn from ``[scale, 1]`` and placed at a random
    offset on black; ``keys``: (N,). ``valid`` (N, 2): each image's extent at the top left of a
    canvas (:mod:`ppjax.ops.canvas`), which is what is shrunk and placed (None: the whole image)."""
    from ppjax.ops.bands import apply_bands, shift_scale_bands

    n, h, w = x01.shape[:3]
    valid = jnp.broadcast_to(jnp.array([h, w], jnp.int32), (n, 2)) if valid is None else jnp.asarray(valid)

    def draw(key):
        k = jax.random.fold_in(jax.random.fold_in(key, step), 0xD1)
        k_use, k_scale, k_y, k_x = jax.random.split(k, 4)
        s = jnp.where(jax.random.uniform(k_use) < p, jax.random.uniform(k_scale, minval=scale, maxval=1.0), 1.0)
        return s, jax.random.uniform(k_y), jax.random.uniform(k_x)

    s, uy, ux = jax.vmap(draw)(keys)
    hv, wv = valid[:, 0].astype(jnp.float32), valid[:, 1].astype(jnp.float32)
    cols = shift_scale_bands(valid[:, 1], w, s, ux * (1.0 - s) * wv)
    rows = shift_scale_bands(valid[:, 0], h, s, uy * (1.0 - s) * hv)
    moved = apply_bands(apply_bands(x01, *cols, axis=2), *rows, axis=1)
    return jnp.where((s < 1.0)[:, None, None, None], moved, x01)  # exactly the image when not drawn


def mirror_inputs(x01: jnp.ndarray, keys: jax.Array, step, p: float, valid=None) -> jnp.ndarray:
    """(N, H, W, 3) ``x01``, each image with probability ``p`` mirrored left to right, per image
    from its own key (``keys`` (N,)) and the step. ``valid`` (N, 2): each photo's extent at the
    top left of a canvas, which is mirrored in place (None: the whole image); the padding's columns
    move too, but nothing reads them (:mod:`ppjax.ops.canvas`)."""
    n, h, w = x01.shape[:3]
    widths = jnp.full((n,), w, jnp.int32) if valid is None else jnp.asarray(valid)[:, 1].astype(jnp.int32)

    def draw(key):
        return jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, step), 0xF11B)) < p

    flip = jax.vmap(draw)(keys)
    # Reversed, the photo's columns end at the canvas's right edge; rolled back by the padding's
    # width they start at column 0 again, so the photo stays at the top left.
    mirrored = jax.vmap(lambda im, pad: jnp.roll(im, -pad, axis=1))(x01[:, :, ::-1, :], w - widths)
    return jnp.where(flip[:, None, None, None], mirrored, x01)


def spectrum_inputs(x01: jnp.ndarray, keys: jax.Array, step, rho: float, sigma: float, valid=None) -> jnp.ndarray:
    """(N, H, W, 3) ``x01`` as SSA's classifiers see it at ``step``: ``IDCT(DCT(x + noise) * M)``
    with noise ~ N(0, ``sigma``^2) (``sigma`` in [0, 1] pixel units) and each coefficient's factor
    M ~ U(1 - ``rho``, 1 + ``rho``), per image from its own key (``keys`` (N,)) and the step. The
    DCT is orthonormal, over the whole canvas; pixels outside each image's ``valid`` (N, 2) extent
    stay as they were (the canvas's black). Its gradient is the identity (straight through)."""
    import jax.scipy.fft

    from ppjax.attacks.projections import region

    n, h, w = x01.shape[:3]

    def draw(key):
        k_noise, k_mask = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, step), 0x55A))
        noise = sigma * jax.random.normal(k_noise, (h, w, 3), jnp.float32)
        factor = jax.random.uniform(k_mask, (h, w, 3), jnp.float32, 1.0 - rho, 1.0 + rho)
        return noise, factor

    noise, factor = jax.vmap(draw)(keys)
    seen = jax.scipy.fft.idctn(jax.scipy.fft.dctn(x01 + noise, axes=(1, 2), norm="ortho") * factor, axes=(1, 2), norm="ortho")
    inside = region(valid, x01.shape)
    if inside is not None:
        seen = jnp.where(inside > 0, seen, x01)
    return x01 + jax.lax.stop_gradient(seen - x01)


def ghost_draws(keys: jax.Array, step, copies: int, salt: int, tau: float):
    """The :class:`ppjax.models.layers.Ghost` of ``copies`` draws of each of N images, draw-major
    like the channel's draws ((copies * N,) keys: draw d of image n at ``d * N + n``): image n's
    factors come from its own key (``keys`` (N,)), the step, ``salt`` (which group of draws) and
    the draw, never from its batch. None when ``tau`` is 0 (the networks themselves)."""
    from ppjax.models.layers import Ghost

    if not tau:
        return None

    def of_image(key):
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, step), 0x6057), salt)
        return jax.vmap(lambda d: jax.random.fold_in(k, d))(jnp.arange(copies))

    per_image = jax.vmap(of_image)(keys)  # (N, copies)
    return Ghost(jnp.swapaxes(per_image, 0, 1).reshape(-1), float(tau))


def _gaussian(kernel: int) -> np.ndarray:
    """The normalised 1-D Gaussian of ``kernel`` taps (sigma ``kernel / 6``); TI's 2-D kernel is its
    outer product with itself."""
    r = np.arange(kernel, dtype=np.float64) - (kernel - 1) / 2
    g = np.exp(-0.5 * (r / (kernel / 6.0)) ** 2)
    return (g / g.sum()).astype(np.float32)


def smooth_gradient(kernel: int) -> optax.GradientTransformation:
    """TI's smoothing: each channel of the (N, H, W, 3) gradient convolved with a ``kernel`` x
    ``kernel`` Gaussian ('same' size, zeros beyond the border), as two 1-D passes of shifted
    multiply-adds (XLA:CPU's grouped convolution took 92 ms on a 1088-pixel canvas; these take a
    few)."""
    taps = _gaussian(kernel)
    half = kernel // 2

    def blur(g, axis):
        pads = [(0, 0)] * g.ndim
        pads[axis] = (half, half)
        padded = jnp.pad(g, pads)
        n = g.shape[axis]
        return sum(float(t) * jax.lax.slice_in_dim(padded, k, k + n, axis=axis) for k, t in enumerate(taps))

    def update(g, state, params=None):
        return blur(blur(g, 1), 2), state

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
