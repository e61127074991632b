"""What each setting of `ppjax bench robustness` attacks with (no photos run here)."""

from __future__ import annotations

import jax.numpy as jnp

from ppjax.bench.robustness import PLAIN_PGD_STEPS, _protector
from ppjax.models import Model, ModelSpec


def _model():
    return Model(ModelSpec("m", "", 10, 32, (0.0,) * 3, (1.0,) * 3), lambda v, x: jnp.zeros((x.shape[0], 10)), (), tuple(map(str, range(10))))


def test_plain_pgd_keeps_the_peers_steps_whatever_the_strength():
    assert _protector("plain PGD", [_model()], None, None)[0].steps == PLAIN_PGD_STEPS == 20
    assert _protector("plain PGD", [_model()], None, 5)[0].steps == 5


def test_the_social_setting_takes_the_strengths_steps_and_lattice_steps_as_protect_does():
    mid, rounds = _protector("social", [_model()], None, None)
    assert (mid.steps, mid.lattice_steps, rounds) == (12, 4, 3)
    high = _protector("social", [_model()], None, None, {"strength": "high"})[0]
    assert (high.steps, high.lattice_steps) == (30, 10)
    assert _protector("social", [_model()], None, None, {"lattice_steps": 0})[0].lattice_steps == 0
    assert _protector("social", [_model()], None, None, {"method": "edit+pgd"})[0].lattice_steps == 10
