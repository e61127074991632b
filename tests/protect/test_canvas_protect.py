"""Protection on canvases: one program for every size on a canvas, traced once per machine; the
padding never changes and never reaches a file; each photo reported as it finishes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ppjax import attacks
from ppjax.ops.canvas import CANVASES
from ppjax.protect import Protector
from ppjax.protect import protector as protector_module
from ppjax.store.programs import ProgramCache

from ..attack_models import TinyNet


def _target():
    module = TinyNet()
    return attacks.Target(module.apply, module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))), attacks.cross_entropy())


@pytest.fixture
def traces(monkeypatch):
    """How often the protection program was traced (its Python body runs once per trace)."""
    count = {"run": 0}
    run = protector_module.run_pixel

    def counting(*args, **kwargs):
        count["run"] += 1
        return run(*args, **kwargs)

    monkeypatch.setattr(protector_module, "run_pixel", counting)
    return count


def _photos(tmp_path, sizes) -> list:
    rng = np.random.default_rng(0)
    jobs = []
    (tmp_path / "in").mkdir(exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / "in" / f"{i}-{w}x{h}.png"
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
        Image.fromarray(np.clip(ramp + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)).save(path)
        jobs.append((path, tmp_path / "out" / f"{path.stem}.png"))
    return jobs


@pytest.mark.slow
def test_one_program_serves_every_size_on_a_canvas_and_is_traced_once_per_machine(tmp_path, traces):
    """Three photo sizes on the 256 canvas: one traced program; a second protector (a new process's)
    with the same program cache loads it from disk instead of tracing it; the bytes are the same."""
    from ppjax.protect import protect_files

    cache = ProgramCache(tmp_path / "programs", identity="tinynet")
    jobs = _photos(tmp_path, [(40, 48), (100, 61), (256, 200)])
    p = Protector([_target()], method="pgd", eps=4.0, steps=2, channel="social", program_cache=cache)
    stages: list = []
    done: list = []
    results = protect_files(p, jobs, channel_rounds=1, progress=done.append, stage=lambda src, text: stages.append((src.name, text)))
    assert all(r.error is None for r in results) and {p.canvas_for(h, w).shape for h, w in [(40, 48), (100, 61), (256, 200)]} == {(256, 256)}
    assert traces["run"] == 1
    assert len(list((tmp_path / "programs").glob("run-*.jaxexport"))) == 1
    # Each photo reported as it finished, one at a time; the first said it was compiling.
    assert done == [0, 1, 2, 3]
    assert any("compiling for the 256x256 canvas, once" in text for _, text in stages)
    assert {name for name, text in stages if text == "verifying"} == {src.name for src, _ in jobs}
    first = [out.read_bytes() for _, out in jobs]
    for _, out in jobs:
        out.unlink()
    again = Protector([_target()], method="pgd", eps=4.0, steps=2, channel="social", program_cache=cache)
    protect_files(again, jobs, channel_rounds=1)
    assert traces["run"] == 1  # loaded, not traced
    assert [out.read_bytes() for _, out in jobs] == first


@pytest.mark.slow
def test_the_padding_never_changes_and_never_reaches_a_file(tmp_path):
    from ppjax.protect import protect_files

    p = Protector([_target()], method="pgd", eps=4.0, steps=3, channel="social")
    photos = [np.asarray(Image.open(src)) for src, _ in _photos(tmp_path, [(40, 48), (97, 200)])]
    canvas = p.canvas_for(97, 200)
    x, geometry = p.layout(canvas, photos)
    x01 = x.astype(np.float32) / 255.0
    q, _, _ = p.protect_canvas(jax.random.split(jax.random.key(1), 2), x01, geometry, exact=canvas.exact)
    for j, rgb in enumerate(photos):
        h, w = rgb.shape[:2]
        inside = np.rint(q[j, :h, :w] * 255).astype(int)
        assert 0 < np.abs(inside - rgb).max() <= 4  # changed, within the budget
        outside = q[j].copy()
        outside[:h, :w] = 0
        assert not outside.any()  # the padding (zeros) as it was
    jobs = [(src, out) for src, out in _photos(tmp_path, [(40, 48), (97, 200)])]
    results = protect_files(p, jobs, channel_rounds=0)
    for (src, out), r in zip(jobs, results):
        assert r.error is None and Image.open(out).size == Image.open(src).size


@pytest.mark.slow
def test_a_thin_strip_shares_the_256_canvas_with_a_photo(tmp_path, traces):
    """A strip too thin for the large canvas is shrunk to 256 and drawn whole on the 256 canvas, in
    the same program as a photo that fits it; written at its own size, changed within the budget."""
    from ppjax.protect import protect_files

    p = Protector([_target()], method="pgd", eps=4.0, steps=2, channel="social")
    assert p.work_plan(2000, 3) == (256, True) and p.photo_canvas(2000, 3) == p.photo_canvas(200, 250) == CANVASES[0]
    jobs = _photos(tmp_path, [(2000, 3), (200, 250)])
    results = protect_files(p, jobs, channel_rounds=0)
    assert traces["run"] == 1
    for (src, out), r in zip(jobs, results):
        before, after = np.asarray(Image.open(src), int), np.asarray(Image.open(out), int)
        assert r.error is None and after.shape == before.shape
        assert 0 < np.abs(after - before).max() <= 4


def test_a_thin_copy_fits_only_its_own_canvas_and_terms_keep_photos_alone():
    p = Protector([_target()], channel="social")
    assert p.canvas_for(1080, 2).shape == (1080, 2) and p.canvas_for(300, 200).shape == (320, 320) and p.canvas_for(400, 200).shape == (512, 512)
    assert p.photo_canvas(2000, 3).shape == (256, 256)  # so its photo is shrunk further (work_plan)
    term = attacks.perceptual("ssim", 1.0)
    assert Protector([_target()], channel="social", terms=[term]).canvas_for(300, 200).shape == (300, 200)
    assert Protector([_target()], channel="exact").canvas_for(300, 200).shape == (300, 200)
