"""A model's outputs at any size through programs shared by the sizes of one canvas."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax.models import Model, ModelSpec
from ppjax.models.any_size import SIDES, any_size, canvas_side


def test_canvas_sides_hold_every_size_with_little_waste():
    assert canvas_side(1) == 64 and canvas_side(224) == 224 and canvas_side(225) == 256 and canvas_side(299) == 320
    assert (canvas_side(3024), canvas_side(4032)) == (3200, 4096) and canvas_side(5000) == 5000
    assert all(b % 32 == 0 and 1.1 < b / a <= 1.5 for a, b in zip(SIDES, SIDES[1:]))
    assert all(canvas_side(n) / n < 1.3 for n in range(160, SIDES[-1] + 1))  # under 160 the steps are coarser, and cheap


@pytest.fixture(scope="module")
def lite0_random():
    """EfficientNet-Lite0's architecture with seeded random weights (the real ones are tested by
    the commands' tests): its padding is the hardest case for a canvas."""
    from ppjax.models.efficientnet_lite import SPEC, build, make_apply

    module = build()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return Model(SPEC, make_apply(module, SPEC), variables, tuple(str(i) for i in range(SPEC.num_classes)))


@pytest.mark.slow
def test_sizes_of_one_canvas_share_one_program_and_get_their_own_outputs(lite0_random):
    rng = np.random.default_rng(0)
    fn = any_size(lite0_random, lambda y: jax.nn.softmax(y, -1))
    alone = jax.jit(lambda v, x: jax.nn.softmax(lite0_random.apply(v, x), -1))
    with jax.default_matmul_precision("highest"):
        for h, w in ((70, 90), (96, 81), (65, 96)):  # all on the 96x96 canvas
            x = rng.random((2, h, w, 3), np.float32)
            np.testing.assert_allclose(fn(x), np.asarray(alone(lite0_random.variables, jnp.asarray(x))), atol=1e-5)
        assert fn.programs() == 1
        x = rng.random((2, 96, 96, 3), np.float32)  # a canvas's own size runs as it is
        np.testing.assert_allclose(fn(x), np.asarray(alone(lite0_random.variables, jnp.asarray(x))), atol=1e-5)
        assert fn.programs() == 2


def test_a_model_of_fixed_side_is_left_to_its_own_resize():
    spec = ModelSpec("fixed", "resizes itself", 3, 32, (0.5,) * 3, (0.5,) * 3, fixed_size=32)

    def apply(v, x):  # a stand-in that fails if it ever sees a canvas: its own size must reach it
        assert x.shape[1:3] == (40, 50)
        return jnp.mean(x, axis=(1, 2)) * v

    fn = any_size(Model(spec, apply, jnp.float32(2.0), ("a", "b", "c")))
    x = np.full((1, 40, 50, 3), 0.25, np.float32)
    np.testing.assert_allclose(fn(x), [[0.5, 0.5, 0.5]])


class _Tiny(nn.Module):
    """A convolution (zero padding on both sides), a ReLU, the global mean and a dense head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)))(x))
        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))


def test_a_later_process_loads_the_programs_and_extents_a_first_one_kept(tmp_path, monkeypatch):
    from ppjax.models import any_size as module

    net = _Tiny()
    spec = ModelSpec("tiny", "a test network", 3, 32, (0.5,) * 3, (0.25,) * 3)
    variables = net.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)))
    model = Model(spec, lambda v, x: net.apply(v, spec.normalise(x)), variables, ("a", "b", "c"))
    rng = np.random.default_rng(2)
    photos = [rng.random((2, h, w, 3), np.float32) for h, w in ((20, 30), (25, 17))]  # both on the 64 canvas
    with jax.default_matmul_precision("highest"):
        alone = [np.asarray(model.apply(variables, jnp.asarray(x))) for x in photos]
        first = module.any_size(model, programs=tmp_path)
        for x, want in zip(photos, alone):
            np.testing.assert_allclose(first(x), want, atol=1e-5)
        assert len(list(tmp_path.glob("*.jaxexport"))) == 1 and len(list((tmp_path / "extents").glob("tiny-*.json"))) == 1

        def traced(*args, **kwargs):
            raise AssertionError("the extents should have come from the folder")

        monkeypatch.setattr(module, "level_extents", traced)
        later = module.any_size(model, programs=tmp_path)  # as a new process would: nothing in memory
        for x, want in zip(photos, alone):
            np.testing.assert_allclose(later(x), want, atol=1e-5)
        assert later.programs() == 1
