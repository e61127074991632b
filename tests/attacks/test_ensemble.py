"""Ensembles: how members' objectives join (loss, balanced, logits, probs), and the rule that an image is
protected only when every member is fooled, whatever the fusion."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.protect import Protector

from ..attack_models import LinearNet


def _fixed(logits):
    """A target whose logits are ``logits`` whatever the image (to test the bookkeeping)."""
    return lambda fusion="loss": attacks.Target(lambda v, x: jnp.asarray(logits, jnp.float32), (), attacks.cross_entropy(), fusion)


@pytest.mark.parametrize("fusion", attacks.FUSIONS)
def test_protected_only_when_every_member_is_fooled(fusion):
    fooled = _fixed([[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]])  # class 1 wins: label 0 beaten by 5
    not_fooled = _fixed([[9.0, 1.0, 0.0], [0.0, 3.0, 0.0]])  # image 0 still label 0 (lead -8); image 1 fooled by 3
    x = jnp.zeros((2, 4, 4, 3))
    labels = (jnp.array([0, 0]), jnp.array([0, 0]))
    _, lead = attacks.objective_and_lead([fooled(fusion), not_fooled(fusion)], x, labels)
    assert np.allclose(lead, [-8.0, 3.0])  # the smallest lead over the members, not the fused model's


def test_fusions_combine_logits_and_probabilities():
    a = jnp.array([[2.0, 0.0, -1.0]])
    b = jnp.array([[0.0, 1.0, 3.0]])
    assert np.allclose(attacks.fuse([a, b], "logits"), (a + b) / 2)
    probs = np.exp(np.asarray(attacks.fuse([a, b], "probs")))
    assert np.allclose(probs, (jax.nn.softmax(a) + jax.nn.softmax(b)) / 2, atol=1e-6)
    assert np.allclose(probs.sum(), 1.0, atol=1e-6)


def test_fused_objective_is_the_objective_of_the_fused_logits():
    a, b = _fixed([[2.0, 0.0, -1.0]]), _fixed([[0.0, 1.0, 3.0]])
    x, labels = jnp.zeros((1, 4, 4, 3)), (jnp.array([0]), jnp.array([2]))
    value, _ = attacks.objective_and_lead([a("logits"), b("logits")], x, labels)
    fused = jnp.array([[1.0, 0.5, 1.0]])
    ce = -jax.nn.log_softmax(fused)[0]
    assert np.isclose(value, (ce[0] + ce[2]) / 2)  # each member's label on the fused logits, averaged
    summed, _ = attacks.objective_and_lead([a(), b()], x, labels)
    assert np.isclose(summed, -jax.nn.log_softmax(jnp.array([2.0, 0.0, -1.0]))[0] - jax.nn.log_softmax(jnp.array([0.0, 1.0, 3.0]))[2])


def _linear(w, fusion):
    return attacks.Target(lambda v, x: jnp.einsum("np,pc->nc", x.reshape(x.shape[0], -1), v), w, attacks.cross_entropy(), fusion)


def test_balanced_members_pull_with_the_same_weight():
    """Two linear members, one with weights 30 times the other's: summed, the large one decides
    every sign; balanced, each member's gradient arrives with a mean magnitude of 1 per image."""
    rng = np.random.default_rng(0)
    small, large = (jnp.asarray(rng.normal(size=(4 * 4 * 3, 3)) * s, jnp.float32) for s in (0.1, 3.0))
    x = jnp.asarray(rng.uniform(size=(2, 4, 4, 3)) - 0.5, jnp.float32)
    labels = (jnp.array([0, 1]), jnp.array([2, 0]))

    def grad(fusion, ws, labels=labels):
        targets = [_linear(w, fusion) for w in ws]
        return np.asarray(jax.grad(lambda x: attacks.objective_and_lead(targets, x, labels)[0])(x))

    alone = [grad("loss", [w], (y,)) for w, y in zip((small, large), labels)]
    expected = sum(g / np.abs(g).mean(axis=(1, 2, 3), keepdims=True) for g in alone)
    np.testing.assert_allclose(grad("balanced", [small, large]), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad("loss", [small, large]), alone[0] + alone[1], rtol=1e-4, atol=1e-4)
    # Values and leads are those of the summed losses: only the backward pass differs.
    summed = attacks.objective_and_lead([_linear(w, "loss") for w in (small, large)], x, labels)
    balanced = attacks.objective_and_lead([_linear(w, "balanced") for w in (small, large)], x, labels)
    for a, b in zip(summed, balanced):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_members_must_agree_on_fusion_and_share_classes_to_fuse():
    x, labels = jnp.zeros((1, 4, 4, 3)), (jnp.array([0]), jnp.array([0]))
    with pytest.raises(ValueError, match="one fusion"):
        attacks.objective_and_lead([_fixed([[1.0, 0.0]])("loss"), _fixed([[1.0, 0.0]])("logits")], x, labels)
    with pytest.raises(ValueError, match="same classes"):
        attacks.objective_and_lead([_fixed([[1.0, 0.0]])("logits"), _fixed([[1.0, 0.0, 0.0]])("logits")], x, labels)
    # Summed losses take members with different classes.
    attacks.objective_and_lead([_fixed([[1.0, 0.0]])(), _fixed([[1.0, 0.0, 0.0]])()], x, labels)


@pytest.mark.slow
@pytest.mark.parametrize("fusion", attacks.FUSIONS)
def test_a_fused_ensemble_is_protected_against_each_member_within_budget(fusion):
    module = LinearNet()
    members = [module.init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3))) for seed in (1, 2)]
    targets = [attacks.Target(module.apply, v, attacks.cross_entropy(), fusion) for v in members]
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)) / 255.0, jnp.float32)
    protector = Protector(targets, eps=4.0, steps=20, channel="exact")
    out, labels, ok = protector(jax.random.key(0), x)
    assert np.abs(np.asarray(out) - np.asarray(x)).max() <= 4.0 / 255.0 + 1e-6
    for v, y in zip(members, labels):
        seen = np.asarray(jnp.argmax(module.apply(v, jnp.asarray(out)), -1))
        assert ((seen != np.asarray(y)) | ~np.asarray(ok)).all()  # "protected" means every member moved
    assert np.asarray(ok).mean() >= 0.75


def test_protect_refuses_to_fuse_models_with_other_classes(tmp_path):
    from ppjax.models import Model, ModelSpec
    from ppjax.protect import build_protector
    from ppjax.protect.config import ProtectConfig

    def load(name):
        n = {"efficientnet-lite0": 1000, "places365": 365}[name]
        spec = ModelSpec(name, "", n, 32, (0.0,) * 3, (1.0,) * 3)
        return Model(spec, lambda v, x: jnp.zeros((x.shape[0], n)), (), tuple(map(str, range(n))))

    config = ProtectConfig((tmp_path,), tmp_path / "out", models=("efficientnet-lite0", "places365"), ensemble="logits", channel="exact")
    with pytest.raises(ValueError, match="same classes"):
        build_protector(config, load)
    assert build_protector(ProtectConfig((tmp_path,), tmp_path / "out", models=("efficientnet-lite0", "places365"), channel="exact"), load).targets
