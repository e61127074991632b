"""Transfer parts: input diversity, TI smoothing, momentum, scale copies, spectrum simulation, mirror; within
budget, deterministic per key."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.io import to_float01
from ppjax.protect import Protector


def _keys(n, seed=0):
    return jnp.stack([jax.random.fold_in(jax.random.key(seed), i) for i in range(n)])


@pytest.mark.slow
def test_input_diversity_draws_per_image_and_step(photos):
    x = jnp.asarray(to_float01(photos))
    keys = _keys(len(photos))
    assert np.array_equal(attacks.diverse_inputs(x, keys, 3, 0.0, 0.85), x)  # p = 0: the images themselves
    a = np.asarray(attacks.diverse_inputs(x, keys, 3, 1.0, 0.85))
    assert a.shape == x.shape and a.min() >= 0.0 and a.max() <= 1.0
    assert all(np.abs(a[i] - x[i]).max() > 0.05 for i in range(len(photos)))  # each shrunk and moved
    # Image 2's copy depends on its key and the step, not on the batch it is in (up to float order).
    alone = np.asarray(attacks.diverse_inputs(x[2:3], keys[2:3], 3, 1.0, 0.85))
    assert np.allclose(alone[0], a[2], atol=1e-6)
    assert not np.array_equal(np.asarray(attacks.diverse_inputs(x, keys, 4, 1.0, 0.85))[2], a[2])
    # Shrunk onto black: a border of the canvas is black somewhere.
    assert (a[:, :1].max(axis=(1, 2, 3)) == 0).any() or (a[:, -1:].max(axis=(1, 2, 3)) == 0).any() or (a[:, :, :1].max(axis=(1, 2, 3)) == 0).any()


def test_spectrum_simulation_scales_each_dct_coefficient_within_its_range_per_image_and_step():
    import scipy.fft

    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.rand(3, 24, 32, 3).astype(np.float32))
    keys = _keys(3)
    assert np.allclose(attacks.spectrum_inputs(x, keys, 2, 0.0, 0.0), x, atol=1e-5)  # no range, no noise: the image
    seen = np.asarray(attacks.spectrum_inputs(x, keys, 2, 0.5, 0.0))
    # Without noise, each coefficient (scipy's orthonormal DCT-II, per channel) is the original's
    # times its own factor in [0.5, 1.5], and the factors differ from one coefficient to the next.
    before = scipy.fft.dctn(np.asarray(x, np.float64), axes=(1, 2), norm="ortho")
    after = scipy.fft.dctn(seen.astype(np.float64), axes=(1, 2), norm="ortho")
    big = np.abs(before) > 0.05
    ratio = after[big] / before[big]
    assert ratio.min() > 0.5 - 1e-3 and ratio.max() < 1.5 + 1e-3 and ratio.std() > 0.2
    # Image 1's view comes from its key and the step, not from its batch; another step, another view.
    alone = np.asarray(attacks.spectrum_inputs(x[1:2], keys[1:2], 2, 0.5, 0.0))
    assert np.allclose(alone[0], seen[1], atol=1e-5)
    assert not np.allclose(np.asarray(attacks.spectrum_inputs(x, keys, 3, 0.5, 0.0))[1], seen[1], atol=1e-3)
    # Noise of 4/255: the view moves by about that much more; beyond each image's extent on a canvas
    # the pixels (the canvas's black) are left exactly as they were.
    valid = jnp.array([[24, 32], [10, 20], [24, 5]])
    noisy = np.asarray(attacks.spectrum_inputs(x, keys, 2, 0.0, 4 / 255, valid))
    assert np.std(noisy[0] - np.asarray(x[0])) == pytest.approx(4 / 255, rel=0.1)
    assert np.array_equal(noisy[1, 10:], np.asarray(x[1, 10:])) and np.array_equal(noisy[1, :, 20:], np.asarray(x[1, :, 20:]))
    assert np.array_equal(noisy[2, :, 5:], np.asarray(x[2, :, 5:])) and not np.allclose(noisy[2, :, :5], x[2, :, :5])
    # Straight through: the gradient at the view is the image's own.
    grad = jax.grad(lambda a: jnp.sum(attacks.spectrum_inputs(a, keys, 2, 0.5, 4 / 255) ** 2))(x)
    assert np.allclose(grad, 2 * np.asarray(attacks.spectrum_inputs(x, keys, 2, 0.5, 4 / 255)), atol=1e-5)


def test_mirror_flips_each_photo_within_its_extent_per_image_and_step():
    rng = np.random.RandomState(1)
    valid = jnp.array([[24, 32], [10, 20], [24, 5], [16, 17]])
    x = np.zeros((4, 24, 32, 3), np.float32)
    for i, (h, w) in enumerate(np.asarray(valid)):
        x[i, :h, :w] = rng.rand(h, w, 3)
    x = jnp.asarray(x)
    keys = _keys(4)
    assert np.array_equal(attacks.mirror_inputs(x, keys, 0, 0.0, valid), x)  # p = 0: the images themselves
    seen = np.asarray(attacks.mirror_inputs(x, keys, 0, 1.0, valid))
    for i, (h, w) in enumerate(np.asarray(valid)):
        # The photo mirrored in place, at the top left; the canvas's black stays black.
        assert np.array_equal(seen[i, :h, :w], np.asarray(x[i, :h, :w])[:, ::-1])
        assert not seen[i, h:].any() and not seen[i, :, w:].any()
    # Without an extent, the whole image; each image and step draws its own flip (about half at 0.5).
    assert np.array_equal(attacks.mirror_inputs(x, keys, 0, 1.0), np.asarray(x)[:, :, ::-1])
    many = _keys(64, seed=5)
    ones = jnp.broadcast_to(jnp.arange(8, dtype=jnp.float32)[None, None, :, None], (64, 2, 8, 1))
    flipped = [np.asarray(attacks.mirror_inputs(ones, many, step, 0.5))[:, 0, 0, 0] > 0 for step in (3, 4)]
    assert 16 < flipped[0].sum() < 48 and not np.array_equal(flipped[0], flipped[1])
    assert np.array_equal(np.asarray(attacks.mirror_inputs(ones[5:6], many[5:6], 3, 0.5))[0], np.asarray(attacks.mirror_inputs(ones, many, 3, 0.5))[5])
    # The gradient is the cotangent mirrored back, within each extent.
    cotangent = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    grad = np.asarray(jax.grad(lambda a: jnp.sum(attacks.mirror_inputs(a, keys, 0, 1.0, valid) * cotangent))(x))
    for i, (h, w) in enumerate(np.asarray(valid)):
        assert np.allclose(grad[i, :h, :w], np.asarray(cotangent[i, :h, :w])[:, ::-1])


def test_smoothing_keeps_a_constant_gradient_inside_and_blurs_a_spike():
    rule = attacks.smooth_gradient(5)
    flat = jnp.ones((1, 16, 16, 3))
    out, _ = rule.update(flat, rule.init(flat))
    assert np.allclose(np.asarray(out)[0, 2:-2, 2:-2], 1.0, atol=1e-6)
    spike = jnp.zeros((1, 16, 16, 3)).at[0, 8, 8, 1].set(1.0)
    out = np.asarray(rule.update(spike, rule.init(spike))[0])
    assert out[0, 8, 8, 1] < 0.5 and out[0, 6:11, 6:11, 1].sum() == pytest.approx(1.0, abs=1e-5)
    assert np.abs(out[..., 0]).max() == 0 and np.abs(out[..., 2]).max() == 0  # per channel


@pytest.mark.slow
def test_scale_copies_average_the_objective_and_keep_the_images_own_lead(tiny, photos):
    from ppjax.attacks.loop import _objective_and_lead

    x = jnp.asarray(to_float01(photos))
    labels = (jnp.argmax(tiny.apply(tiny.variables, x), axis=-1),)
    value, lead = _objective_and_lead((tiny,), x, labels, scales=3)
    parts = [attacks.objective_and_lead((tiny,), x * s, labels) for s in (1.0, 0.5, 0.25)]
    assert float(value) == pytest.approx(float(np.mean([float(v) for v, _ in parts])), rel=1e-5)
    assert np.allclose(lead, parts[0][1], atol=1e-5)
    assert not np.allclose(parts[1][1], parts[0][1], atol=1e-3)  # the copies do differ
    assert _objective_and_lead((tiny,), x, labels, scales=1)[0] == pytest.approx(float(parts[0][0]), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"diversity": 1.0}, {"smoothing": 5}, {"momentum": 1.0}, {"scales": 3}, {"spectrum": 0.5}, {"diversity": 0.7, "smoothing": 3, "momentum": 1.0, "scales": 2}]
)
@pytest.mark.slow
def test_transfer_parts_stay_in_budget_and_are_deterministic(tiny, photos, kwargs):
    x = to_float01(photos)
    protector = Protector([tiny], eps=3.0, steps=6, transfer=attacks.Transfer(**kwargs), margin=4.0)
    keys = _keys(len(photos))
    q1, _, _ = protector(keys, x)
    q2, _, _ = protector(keys, x)
    assert np.array_equal(q1, q2)
    assert np.abs(np.rint(q1 * 255) - np.rint(x * 255)).max() <= 3
    assert not np.array_equal(q1, x)
    other, _, _ = protector(_keys(len(photos), seed=1), x)
    if kwargs.get("diversity") or kwargs.get("spectrum"):
        assert not np.array_equal(other, q1)  # the draws come from the keys


def test_transfer_is_refused_by_methods_with_their_own_loop(tiny):
    with pytest.raises(ValueError, match="own"):
        attacks.build("cw", [tiny], transfer=attacks.Transfer(momentum=1.0))
    with pytest.raises(ValueError, match="odd"):
        attacks.Transfer(smoothing=4)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="whole number"):
            attacks.Transfer(scales=bad)
    assert attacks.Transfer(scales=2).active and not attacks.Transfer(scales=1).active


def _residual_target(ghost: bool):
    """A small network with two residual blocks (random weights), as a Target."""
    from ppjax.models.efficientnet_lite import MBConvBlock
    import flax.linen as nn

    class Small(nn.Module):
        @nn.compact
        def __call__(self, x, ghost=None):
            from ppjax.models.layers import at_block

            x = nn.Conv(8, (3, 3), strides=(2, 2))(x)
            x = MBConvBlock(3, 1, 2, 8, 8, 16, name="b0")(x, at_block(ghost, 0))
            x = MBConvBlock(3, 1, 2, 8, 8, 8, name="b1")(x, at_block(ghost, 1))
            return nn.Dense(5)(jnp.mean(x, axis=(1, 2)))

    module = Small()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))

    def apply(v, x, ghost=None):
        return module.apply(v, x, ghost)

    return attacks.Target(apply, variables, attacks.cross_entropy(), ghost=ghost)


@pytest.mark.slow
def test_ghost_networks_change_the_step_gradient_per_step_and_only_for_targets_that_take_them():
    from ppjax.attacks.loop import _gradient

    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    keys = _keys(2)
    target = _residual_target(True)
    labels = (jnp.argmax(target.apply(target.variables, x), axis=-1),)
    plain = _gradient((target,), (), "sum")(x, x, labels, keys, 0, None)[0]
    ghost = _gradient((target,), (), "sum", ghost=0.3)
    g0, g1 = ghost(x, x, labels, keys, 0, None)[0], ghost(x, x, labels, keys, 1, None)[0]
    assert not np.allclose(g0, plain, atol=1e-6) and not np.allclose(g0, g1, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ghost(x, x, labels, keys, 0, None)[0]), np.asarray(g0))  # pure: same key, same step
    blind = _residual_target(False)  # a target that takes no ghost is attacked as it is
    np.testing.assert_array_equal(
        np.asarray(_gradient((blind,), (), "sum", ghost=0.3)(x, x, labels, keys, 0, None)[0]),
        np.asarray(_gradient((blind,), (), "sum")(x, x, labels, keys, 0, None)[0]),
    )


def test_ghost_attack_stays_in_budget_and_verifies_on_the_network_itself():
    target = _residual_target(True)
    x = np.asarray(jax.random.uniform(jax.random.key(2), (2, 16, 16, 3)))
    protector = Protector([target], eps=4.0, steps=5, transfer=attacks.Transfer(ghost=0.3), margin=1.0, channel="exact")
    q, labels, flags = protector(_keys(2), x)
    assert np.abs(np.rint(q * 255) - np.rint(x * 255)).max() <= 4 and not np.array_equal(q, x)
    truth = np.asarray(target.apply(target.variables, jnp.asarray(q)))  # the verdict is the network's own, no ghost
    assert np.array_equal(flags, np.argmax(truth, -1) != np.asarray(labels[0]))


@pytest.mark.slow
def test_ghost_attack_runs_through_the_social_channel_on_canvases(photos):
    """The channel's views and the canvas's masking wrap each target's apply: the ghost must reach
    the network through them (a wrapper that took it as another argument broke every photo)."""
    target = _residual_target(True)
    x = to_float01(photos)
    plain = Protector([target], eps=4.0, steps=4, transfer=attacks.Transfer(diversity=1.0), margin=1.0)
    ghost = Protector([target], eps=4.0, steps=4, transfer=attacks.Transfer(diversity=1.0, ghost=0.3), margin=1.0)
    q0, _, _ = plain(_keys(len(photos)), x)
    q1, _, _ = ghost(_keys(len(photos)), x)
    assert np.abs(np.rint(q1 * 255) - np.rint(x * 255)).max() <= 4 and not np.array_equal(q1, q0)
    with pytest.raises(ValueError, match="ghost"):
        attacks.Transfer(ghost=0.6)
    assert attacks.Transfer(ghost=0.2).active
