"""The photo edits (ppjax.edits) against independent references, at two resolutions, under jit and vmap."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ppjax.edits import PARTS, EditPipeline, apply_full, pipeline
from ppjax.edits import curves, grade, guided
from ppjax.edits.colour import lab_to_srgb, srgb_to_lab
from ppjax.edits.looks import LOOKS, load_look, look, save_look

jax.config.update("jax_default_matmul_precision", "highest")


def _random_params(pipe: EditPipeline, seed: int, scale: float = 1.0) -> dict:
    """Every slider at a random value inside its range (``scale`` of it)."""
    leaves, tree = jax.tree_util.tree_flatten(pipe.identity())
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    u = jax.tree_util.tree_unflatten(tree, [jax.random.uniform(k, a.shape, minval=-scale, maxval=scale) for k, a in zip(keys, leaves)])
    return pipe.from_normalised(u)


@pytest.fixture(scope="module")
def photo(places_batch) -> np.ndarray:
    """One real 256x256 photo, float [0, 1] on the uint8 lattice, (1, 256, 256, 3)."""
    return np.asarray(places_batch[:1], np.float32)


def test_lab_inverse_matches_scikit_image():
    color = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 1, (500, 3)).astype(np.float32)
    lab = np.asarray(srgb_to_lab(jnp.asarray(rgb)))
    np.testing.assert_allclose(lab, color.rgb2lab(rgb[None].astype(np.float64))[0], atol=2e-3)
    np.testing.assert_allclose(np.asarray(lab_to_srgb(jnp.asarray(lab))), rgb, atol=2e-5)
    np.testing.assert_allclose(np.asarray(lab_to_srgb(jnp.asarray(lab))), color.lab2rgb(lab[None].astype(np.float64))[0], atol=2e-4)


def test_curves_read_as_numpy_interpolates():
    rng = np.random.default_rng(1)
    d = rng.uniform(-0.3, 0.3, curves.PIECES).astype(np.float32)
    knots = np.asarray(curves.knots(jnp.asarray(d)))
    assert knots[0] == pytest.approx(0.0, abs=1e-7) and knots[-1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(knots) > 0)  # monotone: slopes 1 + d > 0
    np.testing.assert_allclose(np.diff(knots) * curves.PIECES, (1 + d) / (1 + d.mean()), rtol=1e-5)
    x = rng.uniform(0, 1, 1000).astype(np.float32)
    got = np.asarray(curves.read_curve(curves.deviations(jnp.asarray(d)), jnp.asarray(x)))
    np.testing.assert_allclose(got, np.interp(x, np.linspace(0, 1, curves.PIECES + 1), knots), atol=1e-6)


def _direct_guided(p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """The self-guided filter written out with windows clipped at the borders, in float64."""
    h, w = p.shape

    def box(a):
        out = np.empty_like(a)
        for i in range(h):
            for j in range(w):
                out[i, j] = a[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean()
        return out

    mean = box(p)
    var = box(p * p) - mean * mean
    a = var / (var + eps)
    b = (1 - a) * mean
    return box(a) * p + box(b)


def test_guided_filter_matches_a_direct_implementation_and_ignores_the_canvas():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, (13, 9))
    want = _direct_guided(p, 2, 0.01)
    np.testing.assert_allclose(np.asarray(guided.guided_filter(jnp.asarray(p, jnp.float32), 2, 0.01)), want, atol=1e-5)
    canvas = np.full((20, 16), 7.0, np.float32)  # junk around the photo must not leak into it
    canvas[:13, :9] = p
    got = jax.jit(guided.guided_filter, static_argnums=2)(jnp.asarray(canvas), jnp.int32(2), 0.01, jnp.int32(13), jnp.int32(9))
    np.testing.assert_allclose(np.asarray(got)[:13, :9], want, atol=1e-5)
    a, b = guided.guided_coefficients(p.astype(np.float32), 2, 0.01, xp=np)  # on the host, as apply_full does
    assert isinstance(a, np.ndarray)
    np.testing.assert_allclose(a * p + b, want, atol=1e-5)


@pytest.mark.parametrize("method", [pytest.param("edit", marks=pytest.mark.slow), *PARTS])
def test_identity_is_exact_and_jit_and_vmap_agree(photo, method):
    pipe = pipeline(method)
    photo = photo[:, 64:160, 32:128]  # op by op is slow: a 96x96 crop
    x = jnp.asarray(photo)
    assert np.array_equal(np.asarray(pipe.apply(pipe.identity(), x)), photo)
    params = [_random_params(pipe, seed) for seed in range(2)]
    eager = [np.asarray(pipe.apply(p, x)) for p in params]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params)
    batched = np.asarray(jax.jit(pipe.apply)(stacked, jnp.concatenate([x, x])))
    for i in range(2):
        np.testing.assert_allclose(batched[i : i + 1], eager[i], atol=2e-5)
        assert np.abs(eager[i] - photo).mean() > 1 / 255  # the sliders do something
        assert eager[i].min() >= 0 and eager[i].max() <= 1


def test_bounds_hold_and_looks_are_inside_them(tmp_path):
    pipe = pipeline("edit")
    wild = jax.tree_util.tree_map(lambda a: a + 100.0, pipe.identity())
    for part, values in pipe.project(wild).items():
        for name, v in values.items():
            assert np.all(np.asarray(v) == PARTS[part].SLIDERS[name].half_range)
    for name in LOOKS:
        params = look(name)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), params, jax.tree_util.tree_map(np.asarray, pipe.project(params))))
    save_look(tmp_path / "warm.json", look("warm"))
    again = load_look(tmp_path / "warm.json")
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, again, look("warm")))
    doc = json.loads((tmp_path / "warm.json").read_text())
    doc["params"]["grade"]["saturation"] = 2.0
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="outside its range"):
        load_look(tmp_path / "bad.json")


@pytest.mark.slow
def test_the_same_sliders_give_the_same_look_at_two_resolutions():
    """A real 2560x1600 photo edited at full size and at half size, both shrunk to 224: the looks
    agree within 1/255 on average (clarity's radius follows the photo's size)."""
    from pathlib import Path

    big = np.asarray(Image.open(sorted(Path(__file__).parents[2].parent.joinpath("shared/data/fullres").glob("*.jpg"))[0]).convert("RGB"))
    big = big[:800, :1280]  # a CI-sized crop
    half = np.asarray(Image.fromarray(big).resize((640, 400), Image.Resampling.BICUBIC))
    pipe = pipeline("edit")
    params = _random_params(pipe, 7, scale=0.8)
    shrink = lambda a: np.asarray(Image.fromarray(a).resize((224, 140), Image.Resampling.BICUBIC)).astype(np.float32)  # noqa: E731
    edited_big = apply_full(pipe, params, big)
    edited_half = apply_full(pipe, params, half)
    change = np.abs(shrink(edited_big) - shrink(big)).mean()
    assert change > 5  # a visible edit
    assert np.abs(shrink(edited_big) - shrink(edited_half)).mean() < 1.0


@pytest.mark.slow
def test_full_size_application_matches_the_program_and_the_working_copy(photo):
    """apply_full (chunks of pixels, the base upsampled from a working copy's coefficients) against
    the batched apply on the photo itself."""
    pipe = pipeline("edit")
    params = _random_params(pipe, 3)
    rgb = np.rint(photo[0] * 255).astype(np.uint8)
    want = np.rint(np.asarray(pipe.apply(params, jnp.asarray(photo)))[0] * 255)
    assert np.abs(apply_full(pipe, params, rgb).astype(int) - want).max() <= 1
    work = np.asarray(Image.fromarray(rgb).resize((128, 128), Image.Resampling.BICUBIC))
    coefficients = np.asarray(pipe.coefficients(jnp.asarray(work[None] / np.float32(255))))[0]
    assert np.abs(apply_full(pipe, params, rgb, coefficients).astype(float) - want).mean() < 1.0


@pytest.mark.slow
def test_hue_guards_keep_skin_sky_and_vegetation_in_their_hue():
    """Every sector shift at its limit, in every direction: a skin-tone, a sky-blue and a leaf-green
    patch keep their CIELAB hue within 2 degrees (an unguarded orange moves much more)."""
    pipe = pipeline("grade")
    patches = jnp.asarray([[224, 172, 140], [120, 170, 230], [70, 130, 50], [230, 150, 30]], jnp.float32)[:, None, None, :] / 255.0
    lab0 = np.asarray(srgb_to_lab(patches))
    hue0 = np.degrees(np.arctan2(lab0[..., 2], lab0[..., 1])) % 360
    assert grade.guard(jnp.asarray(lab0))[:3].min() > 0.9 and grade.guard(jnp.asarray(lab0))[3] < 0.5
    moved = []
    apply = jax.jit(pipe.apply)
    for a, b in ((5, 5), (-5, 5), (5, -5), (-5, -5)):
        params = pipe.identity()
        params["grade"]["shifts"] = jnp.full((len(grade.SECTORS), 2), jnp.asarray([a, b], jnp.float32))
        lab = np.asarray(srgb_to_lab(apply(params, patches)))
        hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360
        moved.append(np.abs((hue - hue0 + 180) % 360 - 180).ravel())
    moved = np.max(moved, axis=0)
    assert moved[:3].max() < 2.0 and moved[3] > 4.0


def test_grain_tells_noise_from_an_edit(photo):
    """The calibration the measure was defined with: sign noise of 4/255 about 3.7, a gamma and
    contrast curve under 1, on a real photo."""
    from ppjax.ops.visibility import colourfulness, grain, rms_contrast

    rgb = np.rint(photo[0] * 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    noisy = np.clip(rgb.astype(int) + 4 * rng.choice([-1, 1], rgb.shape), 0, 255).astype(np.uint8)
    assert 3.3 < grain(rgb, noisy) < 4.1
    x = rgb / 255.0
    curve = np.clip(np.rint(255 * (0.5 + 1.2 * (x**0.8 - 0.5))), 0, 255).astype(np.uint8)
    assert grain(rgb, curve) < 1.0 and np.abs(curve.astype(int) - rgb).mean() > 8
    grey = np.repeat(rgb.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    assert colourfulness(grey) < 1.0 < colourfulness(rgb)
    assert rms_contrast(curve) > rms_contrast(rgb)


def test_local_grid_reads_as_scipy_interpolates():
    interpolate = pytest.importorskip("scipy.interpolate")
    from ppjax.edits.local import GRID, read_grid

    rng = np.random.default_rng(4)
    grid = rng.normal(size=(GRID, GRID)).astype(np.float32)
    pos = rng.uniform(0, 1, (200, 2)).astype(np.float32)
    want = interpolate.RegularGridInterpolator((np.linspace(0, 1, GRID),) * 2, grid)(pos)
    np.testing.assert_allclose(np.asarray(read_grid(jnp.asarray(grid), jnp.asarray(pos))), want, atol=1e-6)


@pytest.mark.slow
def test_local_curves_blend_the_four_knots_curves_and_never_turn_a_tone_over():
    """The grid of curves against NumPy: each of the four surrounding knots' curves read with
    np.interp, blended with the bilinear weights; and, with every slope at a limit of its range,
    the output at any one place still increases with the input."""
    from ppjax.edits import local

    rng = np.random.default_rng(5)
    g, k = local.GRID, local.PIECES
    d = rng.uniform(-0.3, 0.3, (g, g, k)).astype(np.float32)
    dev = np.asarray(curves.deviations(jnp.asarray(d)))
    table = np.asarray(curves.knots(jnp.asarray(d)))
    pos = rng.uniform(0, 1, (300, 2)).astype(np.float32)
    v = rng.uniform(0, 1, 300).astype(np.float32)
    got = np.asarray(local.read_curves(jnp.asarray(dev), jnp.asarray(v), jnp.asarray(pos)))
    xs = np.linspace(0, 1, k + 1)
    want = []
    for (pr, pc), value in zip(pos * (g - 1), v):
        r, c = min(int(pr), g - 2), min(int(pc), g - 2)
        fr, fc = pr - r, pc - c
        read = lambda i, j: np.interp(value, xs, table[i, j])  # noqa: E731
        want.append((1 - fr) * ((1 - fc) * read(r, c) + fc * read(r, c + 1)) + fr * ((1 - fc) * read(r + 1, c) + fc * read(r + 1, c + 1)))
    np.testing.assert_allclose(got, want, atol=2e-6)

    steep = jnp.asarray(rng.choice([-0.3, 0.3], (g, g, k)).astype(np.float32))
    ramp = jnp.linspace(0, 1, 513)
    for p in rng.uniform(0, 1, (20, 2)).astype(np.float32):
        out = np.asarray(local.read_curves(curves.deviations(steep), ramp, jnp.broadcast_to(jnp.asarray(p), (513, 2))))
        assert np.all(np.diff(out) > 0) and abs(out[0]) < 1e-6 and abs(out[-1] - 1) < 1e-6
