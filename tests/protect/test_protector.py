"""The jitted protector: the uint8 lattice, its refinement, compiled programs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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
