"""The jitted protector: the uint8 lattice, its refinement, compiled programs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.io import to_float01, to_uint8
from ppjax.protect import Protector, quantise

from ..attack_models import TRACES, WideLinearNet, protect_uint8


def test_no_recompilation_across_batches_of_one_bucket(tiny, photos):
    p = Protector([tiny], method="bim", eps=4.0, steps=3)
    protect_uint8(p, jax.random.key(0), photos[:4])
    traced = TRACES["n"]
    protect_uint8(p, jax.random.key(1), photos[2:6])
    protect_uint8(p, jax.random.key(2), 255 - photos[:4])
    assert TRACES["n"] == traced

def test_quantise_respects_budget_and_lattice():
    x0 = to_float01(np.asarray([0, 10, 255], np.uint8).reshape(1, 1, 1, 3))
    adv = jnp.asarray([[-0.1, 14.6 / 255, 1.2]]).reshape(1, 1, 1, 3)
    assert to_uint8(quantise(adv, x0, 4.0)).ravel().tolist() == [0, 14, 255]
    assert to_uint8(quantise(adv, x0, 2.5)).ravel().tolist() == [0, 12, 255]
    q = np.asarray(quantise(adv, x0, 4.0)) * 255.0  # on the lattice: whole levels, not just near them
    assert np.abs(q - np.rint(q)).max() < 1e-4

def test_lattice_refinement_runs_only_while_images_lack_margin(linear, photos):
    x0 = jnp.asarray(photos, jnp.float32) / 255.0
    labels = (jnp.argmax(linear.apply(linear.variables, x0), -1),)
    lead = lambda q: np.asarray(attacks.objective_and_lead([linear], jnp.asarray(q, jnp.float32) / 255.0, labels)[1])  # noqa: E731
    # BIM with one step of 1/255 leaves the linear model's images short of a margin of 50 logits.
    few = dict(method="bim", eps=4.0, steps=1, margin=50.0)
    bare = protect_uint8(Protector([linear], lattice_steps=0, **few), jax.random.key(0), photos)[0]
    assert (lead(bare) <= 50.0).any()
    refined, _, ok = protect_uint8(Protector([linear], lattice_steps=4, **few), jax.random.key(0), photos)
    assert (lead(refined) > lead(bare)).any()
    assert ok.tolist() == (lead(refined) > 0).tolist()
    assert np.abs(refined.astype(int) - photos).max() <= 4
    # With margin 0 the attack already protects every image: the refinement leaves them alone.
    enough = dict(method="bim", eps=4.0, steps=4, margin=0.0)
    np.testing.assert_array_equal(
        protect_uint8(Protector([linear], lattice_steps=0, **enough), jax.random.key(0), photos)[0],
        protect_uint8(Protector([linear], lattice_steps=4, **enough), jax.random.key(0), photos)[0],
    )

@pytest.mark.slow
def test_cached_programs_leave_the_weights_out(photos, generated_nima, tmp_path):
    """The persistent cache holds programs, not models: captured as constants, ResNet50's weights
    made each cached program about 190 MB, once per image size."""
    from jax.experimental.compilation_cache import compilation_cache

    module = WideLinearNet()
    target = attacks.Target(module.apply, module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))), attacks.cross_entropy())
    term = attacks.appeal(*generated_nima, 1.0)
    weight_bytes = sum(a.nbytes for a in jax.tree_util.tree_leaves((target.variables, term.variables)))
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jit-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()
    protector = Protector([target], method="coupled", eps=2.0, steps=2, terms=[term])
    q, _, _ = protector(jax.random.key(0), to_float01(photos))
    protector.verify(q, (jnp.zeros(len(photos), jnp.int32),))
    entries = [f for f in (tmp_path / "jit-cache").rglob("*") if f.is_file()]
    assert len(entries) >= 2  # the protection and the verification programs were written
    assert max(f.stat().st_size for f in entries) < weight_bytes / 4


def test_protector_is_immutable_and_replace_recompiles(linear, photos):
    """Settings cannot change under compiled programs: a changed copy is a new protector."""
    import dataclasses

    import pytest

    p = Protector([linear], method="bim", eps=1.0, steps=2, margin=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.eps = 4.0
    wider = dataclasses.replace(p, eps=4.0)
    small, _, _ = protect_uint8(p, jax.random.key(0), photos)
    large, _, _ = protect_uint8(wider, jax.random.key(0), photos)
    assert np.abs(small.astype(int) - photos).max() <= 1 and np.abs(large.astype(int) - photos).max() > 1
    q, _, _ = p(jax.random.key(0), to_float01(photos))
    assert q.dtype == np.float32 and 0.0 <= q.min() and q.max() <= 1.0  # float [0, 1] out, on the lattice
    np.testing.assert_allclose(q * 255, np.rint(q * 255), atol=1e-4)


def _psnr(a, b) -> np.ndarray:
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) / 255.0
    return -10.0 * np.log10(np.mean(d * d, axis=(1, 2, 3)))


@pytest.mark.slow
def test_quantise_keeps_the_psnr_floor_on_the_bytes_and_spends_it(photos):
    """The rounded change keeps the floor exactly (rounding alone would break it: a change of
    +-2.6/255 everywhere rounds to +-3/255), and the scale it finds is near the largest that
    keeps it: the bytes' PSNR sits within 0.01 dB above the floor, not far above it."""
    x0 = to_float01(photos)
    signs = np.asarray(jax.random.rademacher(jax.random.key(0), photos.shape), np.float32)
    for change, floor in ((2.6, 40.0), (4.0, 38.0), (1.6, 43.0)):
        adv = jnp.clip(x0 + signs * change / 255.0, 0.0, 1.0)
        rounded = to_uint8(quantise(adv, x0, 4.0))
        assert (_psnr(rounded, photos) < floor).any()  # without the floor the bytes would break it
        q = to_uint8(quantise(adv, x0, 4.0, min_psnr=floor))
        psnr = _psnr(q, photos)
        assert (psnr >= floor).all() and (psnr < floor + 0.01).all(), (floor, psnr)
        assert np.abs(q.astype(int) - photos).max() <= 4
    # Above the floor already: the plain rounding, unchanged.
    gentle = jnp.clip(x0 + signs * 0.6 / 255.0, 0.0, 1.0)
    np.testing.assert_array_equal(to_uint8(quantise(gentle, x0, 4.0, min_psnr=38.0)), to_uint8(quantise(gentle, x0, 4.0)))


def test_psnr_floor_projection_scales_only_what_breaks_it(photos):
    x0 = jnp.asarray(to_float01(photos))
    project = attacks.with_psnr_floor(attacks.linf_ball(4.0), 40.0).project
    far = x0 + jnp.asarray(np.asarray(jax.random.rademacher(jax.random.key(1), photos.shape), np.float32)) * 6.0 / 255.0
    y = np.asarray(project(far, x0))
    d = (y - np.asarray(x0)) * 255.0
    assert np.abs(d).max() <= 4.0 + 1e-4 and y.min() >= 0.0 and y.max() <= 1.0
    np.testing.assert_allclose(_psnr(y * 255.0, photos), 40.0, atol=1e-3)  # on the floor, not below
    near = x0 + 0.5 / 255.0 * (1 - 2 * (x0 > 0.5))
    np.testing.assert_allclose(np.asarray(project(near, x0)), np.asarray(near), atol=1e-7)
    ball = attacks.linf_ball(4.0)
    assert attacks.with_psnr_floor(ball, None) is ball and attacks.with_psnr_floor(ball, 0.0) is ball


@pytest.mark.slow
def test_protector_keeps_the_floor_for_every_method(linear, tiny, photos):
    """Whatever the method, including those with loops of their own, the bytes keep the floor."""
    for target, method in ((linear, "pgd"), (linear, "mifgsm"), (tiny, "pfgsm"), (linear, "cw")):
        q = protect_uint8(Protector([target], method=method, eps=8.0, steps=5, min_psnr=36.0), jax.random.key(0), photos)[0]
        assert (_psnr(q, photos) >= 36.0).all(), method
        assert np.abs(q.astype(int) - photos).max() <= 8
