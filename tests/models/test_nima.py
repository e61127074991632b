"""NIMA against an independent implementation: the same network built in Keras 3 (JAX backend).

The Keras model is titu1994's: keras MobileNet (alpha 1, no top, average pooling), Dropout(0.75),
Dense(10, softmax), with seeded random weights whose BatchNorm statistics are calibrated on real
photos. It is written to disk in the Keras-2 ``save_weights`` HDF5 layout the released
``mobilenet_weights.h5`` uses, imported through ``ppjax models import nima`` and compared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import ppjax.store as model_store
from ppjax.store.variables import CheckpointMismatchError
from ppjax.cli import app
from ppjax.export.convert_nima import convert
from ppjax.models import nima
from ppjax.store.torch_checkpoint import CheckpointFormatError

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is first imported
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("the Keras reference is built on the JAX backend", allow_module_level=True)


def _build_keras_nima(dense_name: str = "dense_1"):
    base = keras.applications.MobileNet(input_shape=(None, None, 3), alpha=1.0, include_top=False, weights=None, pooling="avg")
    x = keras.layers.Dropout(0.75)(base.output)
    out = keras.layers.Dense(10, activation="softmax", name=dense_name)(x)
    return keras.Model(base.input, out)


def _calibrate(model, x_keras: np.ndarray, seed: int) -> None:
    """Random BatchNorm affine terms, and running statistics measured on real photos, layer by layer."""
    rng = np.random.default_rng(seed)
    h = keras.ops.convert_to_tensor(x_keras)
    for layer in model.layers[1:]:
        if isinstance(layer, keras.layers.BatchNormalization):
            a = np.asarray(h, np.float64)
            layer.moving_mean.assign(a.mean(axis=(0, 1, 2)).astype(np.float32))
            layer.moving_variance.assign(a.var(axis=(0, 1, 2)).astype(np.float32))
            n = a.shape[-1]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.uniform(0.0, 1.0, n).astype(np.float32))  # keeps ReLU6 units alive
        h = layer(h, training=False)
    dense = model.layers[-1]
    dense.kernel.assign(rng.normal(0, 0.3, dense.kernel.shape).astype(np.float32))


def write_keras2_weights(model, path: Path, rename: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """The Keras-2 ``save_weights`` layout: root ``layer_names``, one group per layer with ``weight_names``."""
    rename = rename or {}
    with h5py.File(path, "w") as f:
        layers = [layer for layer in model.layers if layer.name not in drop]
        f.attrs["layer_names"] = np.array([rename.get(layer.name, layer.name).encode() for layer in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.2"
        for layer in layers:
            name = rename.get(layer.name, layer.name)
            group = f.create_group(name)
            names = []
            for w in layer.weights:
                short = w.path.rsplit("/", 1)[-1]
                if isinstance(layer, keras.layers.DepthwiseConv2D) and short == "kernel":
                    short = "depthwise_kernel"  # Keras 2's name for it
                full = f"{name}/{short}:0"
                group.create_dataset(full, data=np.asarray(w.numpy()))
                names.append(full.encode())
            group.attrs["weight_names"] = np.array(names, dtype="S")
    return path


@pytest.fixture(scope="module")
def keras_reference(tmp_path_factory, places_batch):
    keras.utils.set_random_seed(2018)
    model = _build_keras_nima()
    _calibrate(model, 2.0 * places_batch[:12] - 1.0, seed=2019)
    path = write_keras2_weights(model, tmp_path_factory.mktemp("nima") / "mobilenet_weights.h5")
    return model, path


@pytest.fixture
def installed_nima(store, keras_reference):
    model_store.import_files("nima", keras_reference[1])
    return store


def _keras_dist(model, x01: np.ndarray) -> np.ndarray:
    return np.asarray(model(keras.ops.convert_to_tensor(2.0 * x01 - 1.0), training=False))


@pytest.mark.slow
@pytest.mark.core
def test_distribution_matches_keras_on_real_photos(installed_nima, keras_reference, places_batch):
    model, _ = keras_reference
    x = places_batch[:16]
    ref = _keras_dist(model, x)
    nm = model_store.load_model("nima")
    with jax.default_matmul_precision("highest"):
        dist = np.asarray(jax.jit(nm.apply)(nm.variables, jnp.asarray(x)))
    assert np.abs(dist - ref).max() < 1e-5
    mean, std = (np.asarray(v) for v in nima.score_moments(jnp.asarray(dist)))
    rmean, rstd = (np.asarray(v) for v in nima.score_moments(jnp.asarray(ref, jnp.float32)))
    assert np.abs(mean - rmean).max() < 1e-4 and np.abs(std - rstd).max() < 1e-4
    # The photos must be told apart, or the comparison proves little.
    assert rmean.max() - rmean.min() > 0.05


@pytest.mark.slow
def test_keras_224_policy_matches_keras_load_img(installed_nima, keras_reference, places_samples):
    model, _ = keras_reference
    paths = [p for p, _ in places_samples[:4]]
    # What Keras' load_img(path, target_size=(224, 224)) hands the network: PIL nearest resize.
    resized = np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.NEAREST)) for p in paths]) / 255.0
    ref = _keras_dist(model, resized.astype(np.float32))
    nm = model_store.load_model("nima", policy="keras-224")
    full = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).astype(np.float32) / 255.0
    with jax.default_matmul_precision("highest"):
        dist = np.asarray(nm.apply(nm.variables, jnp.asarray(full)))
    assert np.abs(dist - ref).max() < 1e-5


@pytest.mark.parametrize("h, w, size", [(256, 256, 224), (300, 200, 224), (97, 130, 224), (224, 224, 224), (500, 333, 64)])
def test_nearest_resize_is_pils(h, w, size):
    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(img).resize((size, size), Image.NEAREST))
    got = np.asarray(nima.keras_nearest_resize(jnp.asarray(img[None]), size))[0]
    assert (got == ref).all()


@pytest.mark.slow
def test_other_sizes_and_odd_sizes_match_keras(installed_nima, keras_reference, places_batch):
    model, _ = keras_reference
    nm = model_store.load_model("nima")
    for h, w in ((200, 256), (181, 237)):
        x = places_batch[:2, :h, :w]
        with jax.default_matmul_precision("highest"):
            dist = np.asarray(nm.apply(nm.variables, jnp.asarray(x)))
        assert np.abs(dist - _keras_dist(model, x)).max() < 1e-5, (h, w)


@pytest.mark.slow
def test_mean_score_gradient_matches_finite_differences(installed_nima, places_batch):
    nm = model_store.load_model("nima")
    x = places_batch[:1]
    direction = np.random.default_rng(0).normal(size=x.shape)
    direction /= np.linalg.norm(direction)  # unit step: few ReLU6 kinks within reach of +-eps
    with jax.enable_x64(True):
        variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), nm.variables)
        apply = nima.make_apply(dtype=jnp.float64)

        def mean_score(x01):
            return nima.score_moments(apply(variables, x01).astype(jnp.float64))[0].sum()

        x64 = jnp.asarray(x, jnp.float64)
        g = np.asarray(jax.grad(mean_score)(x64))
        # The network is piecewise smooth (ReLU6): a step must be small enough to cross no kink.
        # Measured on this setup: relative error 7e-2 at eps 1e-3, 3e-3 at 1e-5, 3e-7 at 1e-7.
        eps = 1e-7
        fd = (mean_score(x64 + eps * direction) - mean_score(x64 - eps * direction)) / (2 * eps)
    analytic = float(np.sum(g * direction))
    assert abs(analytic) > 1e-3  # a direction the score actually depends on
    assert abs(analytic - float(fd)) <= 1e-5 * abs(float(fd))
    g32 = np.asarray(jax.grad(lambda v: nima.mean_score(nm, v).sum())(jnp.asarray(x)))
    cosine = np.sum(g32 * g) / (np.linalg.norm(g32) * np.linalg.norm(g))
    assert cosine > 0.999


@pytest.mark.slow
def test_dense_layer_name_carries_keras_counter(tmp_path, keras_reference):
    model, path = keras_reference
    renamed = write_keras2_weights(model, tmp_path / "w.h5", rename={"dense_1": "dense_3"})
    a, b = convert(path), convert(renamed)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_missing_layer_is_named(tmp_path, keras_reference):
    model, _ = keras_reference
    broken = write_keras2_weights(model, tmp_path / "w.h5", drop=("conv_pw_7", "conv_dw_7_bn"))
    with pytest.raises(CheckpointMismatchError) as e:
        convert(broken)
    assert e.value.missing == [
        "conv_dw_7_bn/beta", "conv_dw_7_bn/gamma", "conv_dw_7_bn/moving_mean", "conv_dw_7_bn/moving_variance", "conv_pw_7/kernel",
    ]  # fmt: skip
    assert not e.value.unexpected


@pytest.mark.slow
def test_shape_mismatch_and_foreign_files(tmp_path, keras_reference):
    model, _ = keras_reference
    other = _build_keras_nima("dense_2")
    other_head = keras.Model(other.input, keras.layers.Dense(5, name="dense_9")(other.layers[-2].output))
    path = write_keras2_weights(other_head, tmp_path / "five.h5", drop=("dense_2",))
    with pytest.raises(CheckpointMismatchError) as e:
        convert(path)
    assert [w[0] for w in e.value.wrong_shape] == ["dense_9/bias", "dense_9/kernel"]
    not_keras = tmp_path / "plain.h5"
    with h5py.File(not_keras, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointFormatError, match="layer_names"):
        convert(not_keras)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(CheckpointFormatError, match="not an HDF5 file"):
        convert(junk)


def test_fetch_nima_from_loopback(store, loopback_server, keras_reference, monkeypatch):
    monkeypatch.setenv("PPJAX_OFFLINE", "0")
    loopback_server.files["/weights/mobilenet_weights.h5"] = keras_reference[1].read_bytes()
    result = CliRunner().invoke(app, ["models", "fetch", "nima", "--url", loopback_server.url("/weights/mobilenet_weights.h5")])
    assert result.exit_code == 0, result.output
    manifest = model_store.read_manifest("nima")
    assert manifest["sources"][0]["sha256"] == model_store.sha256_file(keras_reference[1])
    listed = [json.loads(line) for line in CliRunner().invoke(app, ["models", "list", "--json"]).stdout.splitlines()]
    assert {r["name"]: r["installed"] for r in listed} == {name: name == "nima" for name in model_store.KNOWN_MODELS}
    assert {"places365", "places365-densenet161", "efficientnet-lite2"} < {r["name"] for r in listed}


@pytest.mark.slow
def test_score_command(installed_nima, keras_reference, places_samples, tmp_path):
    model, _ = keras_reference
    files = [p for p, _ in places_samples[:3]]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    runner = CliRunner()
    result = runner.invoke(app, ["score", "--json", *map(str, files), str(bad)])
    assert result.exit_code == 1 and f"{bad}: " in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(f) for f in files]
    x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).astype(np.float32) / 255.0
    ref = _keras_dist(model, x)
    for r, p in zip(rows, ref):
        assert set(r) == {"file", "mean", "std", "dist"} and len(r["dist"]) == 10
        assert np.abs(np.array(r["dist"]) - p).max() < 1e-5
        assert abs(r["mean"] - float(np.sum(p * np.arange(1, 11)))) < 1e-4
    human = runner.invoke(app, ["score", str(files[0])])
    assert human.exit_code == 0 and f"{rows[0]['mean']:.3f} ± {rows[0]['std']:.3f}" in human.stdout
    assert runner.invoke(app, ["score", "--policy", "bilinear", str(files[0])]).exit_code == 2


@pytest.mark.slow
def test_evaluate_reports_appeal_when_nima_is_installed(installed_nima, official_checkpoint, places_samples, tmp_path):
    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories)
    for d in ("o", "p"):
        (tmp_path / d).mkdir()
    for p, _ in places_samples[:3]:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        Image.fromarray(rgb).save(tmp_path / "o" / f"{p.stem}.png")
        Image.fromarray(255 - rgb).save(tmp_path / "p" / f"{p.stem}.png")  # a drastic change of appeal
    out = tmp_path / "r.json"
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--engine", "jax", "--json", str(out), str(tmp_path / "o"), str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    scores = {}
    for d in ("o", "p"):
        listed = runner.invoke(app, ["score", "--json", str(tmp_path / d)])
        scores[d] = {Path(json.loads(line)["file"]).stem: json.loads(line)["mean"] for line in listed.stdout.splitlines()}
    for im in report["images"]:
        assert im["nima"]["before"] == pytest.approx(scores["o"][im["key"]], abs=1e-4)
        assert im["nima"]["after"] == pytest.approx(scores["p"][im["key"]], abs=1e-4)
    assert report["appeal"]["nima_after_mean"] == pytest.approx(np.mean(list(scores["p"].values())), abs=1e-4)
    assert "Appeal (NIMA mean score)" in out.with_suffix(".md").read_text()
