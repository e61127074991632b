"""The Places365 family (ResNet18, WideResNet18, DenseNet161): fetched from a loopback server in
their official file layouts (random weights), converted, and matched against their original
PyTorch definitions and their ONNX graphs on the real Places365 photos."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import ppjax.store as model_store
from ppjax.cli import app
from ppjax.export.convert_places365 import convert, official_names
from ppjax.models import places365
from ppjax.store.torch_checkpoint import CheckpointFormatError

torch = pytest.importorskip("torch")

MEMBERS = ("places365-resnet18", "places365-wideresnet18", "places365-densenet161")


def _torch_logits(model, spec, x01: np.ndarray) -> np.ndarray:
    from ppjax.evaluate.engines import _pil_resize

    if spec.fixed_size and x01.shape[1:3] != (spec.fixed_size, spec.fixed_size):
        x01 = _pil_resize(x01, (spec.fixed_size, spec.fixed_size))  # the demo's Resize((224, 224)) on 8-bit pixels
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((torch.from_numpy(x01.transpose(0, 3, 1, 2).copy()) - mean) / std).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", MEMBERS)
def test_fetch_convert_and_match_the_original_on_real_photos(name, store, loopback_server, family_checkpoint, places_batch, monkeypatch):
    ckpt = family_checkpoint(name)
    monkeypatch.setenv("PPJAX_OFFLINE", "0")  # downloads allowed, from the loopback server only
    url_path = f"/models_places365/{ckpt.path.name}"
    loopback_server.files[url_path] = ckpt.path.read_bytes()
    loopback_server.files["/categories_places365.txt"] = ckpt.categories.read_bytes()
    result = CliRunner().invoke(app, ["models", "fetch", name, "--url", loopback_server.url(url_path), "--categories-url", loopback_server.url("/categories_places365.txt")])
    assert result.exit_code == 0, result.output
    manifest = model_store.read_manifest(name)
    assert manifest["onnx"]["exported_from"] == "pytorch"

    model = model_store.load_model(name)
    spec = places365.SPECS[name]
    x = places_batch[:4]
    if spec.fixed_size:
        # The network itself at the one size it takes; the resize in front of it is tested below
        # (the port's is within 2/255 of Pillow's, which the ONNX engine uses).
        from ppjax.evaluate.engines import _pil_resize

        x = _pil_resize(x, (spec.fixed_size, spec.fixed_size))
    ref = _torch_logits(ckpt.model, spec, x)
    with jax.default_matmul_precision("highest"):
        out = np.asarray(jax.jit(model.apply)(model.variables, jnp.asarray(x)))
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    assert (out.argmax(1) == ref.argmax(1)).all()
    assert len(set(ref.argmax(1))) > 1 and ref.std(0).mean() > 0.05, "the random network must depend on the image"
    assert model.sensitive == frozenset(places365.SENSITIVE_CATEGORIES.values())

    from ppjax.evaluate.engines import OnnxClassifier

    onnx = OnnxClassifier(model_store.model_dir(name) / model_store.ONNX)
    assert np.abs(onnx.logits(x) - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())
    if spec.fixed_size:  # a photo of another size: the ONNX engine resizes it as the original demo does
        full = places_batch[:2]
        assert np.abs(onnx.logits(full) - _torch_logits(ckpt.model, spec, full)).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_densenet_legacy_layer_names_are_joined():
    sd = {"module.features.denseblock1.denselayer12.norm.1.weight": 1, "module.features.denseblock1.denselayer1.conv.2.weight": 2, "module.features.norm5.bias": 3}
    assert set(official_names(sd)) == {"features.denseblock1.denselayer12.norm1.weight", "features.denseblock1.denselayer1.conv2.weight", "features.norm5.bias"}
    # Today's spelling passes unchanged.
    assert official_names({"features.denseblock1.denselayer1.norm1.weight": 1}) == {"features.denseblock1.denselayer1.norm1.weight": 1}


def test_a_checkpoint_of_another_member_is_refused(family_checkpoint):
    ckpt = family_checkpoint("places365-resnet18")
    with pytest.raises(CheckpointFormatError, match="architecture 'resnet18', not wideresnet18"):
        convert(ckpt.path, "places365-wideresnet18")


def test_family_expands_to_its_members_and_takes_the_sensitive_objective(tmp_path):
    from ppjax.protect.config import ProtectConfig, expand_models

    assert expand_models(["places365-family"]) == ("places365", *MEMBERS)
    assert expand_models(["places365", "places365-family", ""]) == ("places365", *MEMBERS)
    config = ProtectConfig((tmp_path,), tmp_path / "out", models=("places365-family",), objective="sensitive")
    assert config.models == ("places365", *MEMBERS)
    with pytest.raises(ValueError, match="sensitive"):
        ProtectConfig((tmp_path,), tmp_path / "out", models=("places365-family", "efficientnet-lite0"), objective="sensitive")
    with pytest.raises(ValueError, match="--ensemble"):
        ProtectConfig((tmp_path,), tmp_path / "out", models=("places365-family",), ensemble="votes")


def test_wideresnet_sees_any_photo_at_224_like_its_demo(places_batch):
    """The port resizes inside its apply with the differentiable Pillow resize; on real photos it
    is within 2/255 of Pillow's (float32 sums of Pillow's 22-bit fixed point), on few values."""
    from ppjax.evaluate.engines import _pil_resize
    from ppjax.models import ModelSpec, normalised_apply
    from ppjax.ops.resample import resize

    x = places_batch[:6]
    ours = np.asarray(resize(jnp.asarray(x), (224, 224), "bilinear")) * 255.0
    pillow = _pil_resize(x, (224, 224)) * 255.0
    diff = np.abs(ours - pillow)
    assert diff.max() <= 2.0 + 1e-3 and (diff > 0.5).mean() < 0.03
    seen = []
    spec = ModelSpec("probe", "", 1, 224, (0.0,) * 3, (1.0,) * 3, fixed_size=224)
    normalised_apply(type("Probe", (), {"apply": lambda self, v, z: seen.append(z.shape) or z})(), spec)(None, jnp.asarray(x))
    assert seen == [(6, 224, 224, 3)]
