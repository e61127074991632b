"""A universal look fitted over photos (ppjax.attacks.universal), and `--look` / `--no-refine`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.attacks.universal import fit_look
from ppjax.edits import PARTS, EditPipeline
from ppjax.protect.config import ProtectConfig


@pytest.mark.slow
def test_fitting_a_look_raises_the_objective_and_stays_in_range(tiny, photos):
    pipe = EditPipeline(tuple(PARTS))
    x = photos / np.float32(255)
    seen = []
    look = fit_look(pipe, [tiny], x, key=jax.random.key(0), steps=20, batch=4, learning_rate=0.1, max_delta_e=8.0, log=lambda i, v, f: seen.append(v))
    assert len(seen) == 2 and seen[-1] > seen[0]
    projected = jax.tree_util.tree_map(np.asarray, pipe.project(look))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, look, projected))
    edited = pipe.apply(look, jnp.asarray(x))
    from ppjax.ops.metrics import ciede2000

    assert 0.5 < float(jnp.mean(ciede2000(jnp.asarray(x), edited))) <= 8.5
    before = attacks.objective_and_lead([tiny], jnp.asarray(x), (jnp.argmax(tiny.apply(tiny.variables, jnp.asarray(x)), -1),))[0]
    labels = (jnp.argmax(tiny.apply(tiny.variables, jnp.asarray(x)), -1),)
    after = attacks.objective_and_lead([tiny], edited, labels)[0]
    assert float(after) > float(before)


def test_look_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="needs an edit method"):
        ProtectConfig((tmp_path,), tmp_path / "out", look="warm")
    with pytest.raises(ValueError, match="neither"):
        ProtectConfig((tmp_path,), tmp_path / "out", method="edit", look="no-such-look")
    with pytest.raises(ValueError, match="needs --look"):
        ProtectConfig((tmp_path,), tmp_path / "out", method="edit", no_refine=True)
    with pytest.raises(ValueError, match="social"):
        ProtectConfig((tmp_path,), tmp_path / "out", method="edit", channel="exact")
    c = ProtectConfig((tmp_path,), tmp_path / "out", method="edit", look="warm", no_refine=True)
    assert c.steps == 0
    c = ProtectConfig((tmp_path,), tmp_path / "out", method="edit+pgd")
    assert c.steps == attacks.METHODS["edit+pgd"].steps and c.eps == 2.0
