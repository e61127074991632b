"""The model store end to end: fetch from a loopback server, convert, load, classify."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from typer.testing import CliRunner

import ppjax.store as model_store
from ppjax.cli import app

CKPT = "/models_places365/resnet50_places365.pth.tar"
CATS = "/places365/categories_places365.txt"


@pytest.fixture
def served(loopback_server, official_checkpoint, monkeypatch):
    monkeypatch.setenv("PPJAX_OFFLINE", "0")  # downloads allowed, from the loopback server only
    loopback_server.files[CKPT] = official_checkpoint.path.read_bytes()
    loopback_server.files[CATS] = official_checkpoint.categories.read_bytes()
    return loopback_server


def _fetch_args(server):
    return ["models", "fetch", "places365", "--url", server.url(CKPT), "--categories-url", server.url(CATS)]


@pytest.mark.slow
@pytest.mark.core
def test_fetch_convert_load_classify_end_to_end(store, served, official_checkpoint, places_samples):
    runner = CliRunner()
    result = runner.invoke(app, _fetch_args(served))
    assert result.exit_code == 0, result.output
    manifest = model_store.read_manifest("places365")
    sources = {s["role"]: s for s in manifest["sources"]}
    assert sources["checkpoint"]["sha256"] == model_store.sha256_file(official_checkpoint.path)
    assert sources["checkpoint"]["origin"] == served.url(CKPT)
    assert manifest["weights"]["sha256"] == model_store.sha256_file(store / "models/places365/weights.safetensors")
    assert not list((store / "downloads").glob("*")), "downloads are removed after conversion"

    listed = runner.invoke(app, ["models", "list", "--json"])
    row = next(json.loads(line) for line in listed.output.splitlines() if '"places365"' in line)
    assert row["installed"] and row["path"] == str(store / "models/places365")
    assert sources["checkpoint"]["sha256"] in {s["sha256"] for s in row["sources"]}

    files = [str(p) for p, _ in places_samples[:6]]
    result = runner.invoke(app, ["classify", "--json", "--top", "3", *files])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["file"] for d in lines] == files
    # The classifier output must equal the original PyTorch model's on the same photos.
    import torch

    from ppjax.io import read_image, to_float01

    x = np.stack([to_float01(read_image(f).rgb) for f in files])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(official_checkpoint.model((torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) - mean) / std), 1).numpy()
    from ppjax.models.places365 import SENSITIVE_CATEGORIES

    names = [line.split()[0] for line in official_checkpoint.categories.read_text().splitlines()]
    for d, p in zip(lines, probs):
        assert set(d) == {"file", "top", "sensitive"}
        assert [t["index"] for t in d["top"]] == list(np.argsort(-p)[:3])
        assert all(t["label"] == names[t["index"]] for t in d["top"])
        assert np.allclose([t["prob"] for t in d["top"]], np.sort(p)[::-1][:3], atol=1e-5)
        assert d["sensitive"] == (int(np.argmax(p)) in SENSITIVE_CATEGORIES.values())

    human = runner.invoke(app, ["classify", "--top", "2", files[0]])
    assert human.exit_code == 0 and names[lines[0]["top"][0]["index"]] in human.stdout


@pytest.mark.slow
def test_interrupted_download_resumes(store, served):
    size = len(served.files[CKPT])
    served.cut_after[CKPT] = size // 3
    served.cut_times[CKPT] = 1
    target = model_store.fetch("places365", urls={"checkpoint": served.url(CKPT), "categories": served.url(CATS)})
    assert model_store.is_installed("places365") and target == store / "models/places365"
    ranges = [r for path, r in served.requests if path == CKPT]
    assert ranges == [None, f"bytes={size // 3}-"]


def test_download_that_keeps_failing_keeps_partial_file_and_next_run_resumes(store, served):
    size = len(served.files[CKPT])
    served.cut_after[CKPT] = 1000
    served.cut_times[CKPT] = 1 + 1  # first attempt and its single retry both drop
    url = served.url(CKPT)
    with pytest.raises(model_store.DownloadError, match="run the same command again to resume"):
        model_store.download(url, store / "dl" / "ckpt", retries=1)
    part = store / "dl" / "ckpt.part"
    assert part.stat().st_size == 2000 and not (store / "dl" / "ckpt").exists()
    model_store.download(url, store / "dl" / "ckpt")
    assert (store / "dl" / "ckpt").read_bytes() == served.files[CKPT]
    assert [r for p, r in served.requests if p == CKPT] == [None, "bytes=1000-", "bytes=2000-"]
    assert size > 2000


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_fetch_explains_the_import_route(store, monkeypatch):
    monkeypatch.setenv("PPJAX_OFFLINE", "0")
    url = f"http://127.0.0.1:{_closed_port()}/resnet50_places365.pth.tar"
    result = CliRunner().invoke(app, ["models", "fetch", "places365", "--url", url])
    assert result.exit_code == 1
    assert "cannot reach 127.0.0.1" in result.stderr
    assert "ppjax models import places365 PATH" in result.stderr
    assert not model_store.is_installed("places365")


@pytest.mark.slow
def test_import_offline_with_categories(store, official_checkpoint):
    result = CliRunner().invoke(
        app, ["models", "import", "places365", str(official_checkpoint.path), "--categories", str(official_checkpoint.categories)]
    )
    assert result.exit_code == 0, result.output
    manifest = model_store.read_manifest("places365")
    assert {s["role"]: s["origin"].startswith("import:") for s in manifest["sources"]} == {"checkpoint": True, "categories": True}


@pytest.mark.slow
def test_failed_import_leaves_installed_model_untouched(store, official_checkpoint, tmp_path):
    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories)
    before = model_store.read_manifest("places365")
    bogus = tmp_path / "bogus.pth.tar"
    bogus.write_bytes(b"this is not a checkpoint")
    result = CliRunner().invoke(
        app, ["models", "import", "places365", str(bogus), "--categories", str(official_checkpoint.categories)]
    )
    assert result.exit_code == 1 and "bogus.pth.tar" in result.stderr
    assert model_store.read_manifest("places365") == before
    assert sorted(p.name for p in (store / "models").iterdir()) == ["places365"]


def test_classify_without_model_tries_to_fetch_then_says_how_to_import(store, places_samples):
    result = CliRunner().invoke(app, ["classify", str(places_samples[0][0])])
    assert "not installed yet: fetching" in result.stderr
    assert result.exit_code == 1 and "PPJAX_OFFLINE is set" in result.stderr
    assert "ppjax models import places365 PATH" in result.stderr


def _independent_pytorch_model(path):
    """A fresh torchvision-layout ResNet50 filled by PyTorch itself from ``path``, loaded the way the
    official demo loads the real file on Python 3."""
    import torch

    from ppjax.export.torch_resnet import resnet50

    checkpoint = torch.load(path, map_location=lambda storage, loc: storage, encoding="latin1", weights_only=False)
    model = resnet50(365)
    model.load_state_dict({k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}, strict=True)
    return model.eval()


def _assert_classify_top5_matches(model, files):
    import torch

    from ppjax.io import read_image, to_float01

    result = CliRunner().invoke(app, ["classify", "--json", *map(str, files)])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.stdout.splitlines()]
    x = np.stack([to_float01(read_image(f).rgb) for f in files])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(model((torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) - mean) / std), 1).numpy()
    for d, p in zip(got, probs):
        assert [t["index"] for t in d["top"]] == list(np.argsort(-p)[:5])
        assert np.abs(np.array([t["prob"] for t in d["top"]]) - np.sort(p)[::-1][:5]).max() < 1e-4


@pytest.mark.slow
def test_2017_era_official_file_imports_and_classifies(store, official_checkpoint_2017, places_samples):
    """The Python 2 / CUDA-era replica through `ppjax models import`, then `ppjax classify` on the
    shared Places365 photos against an independent PyTorch model loaded from the same file."""
    ckpt = official_checkpoint_2017
    result = CliRunner().invoke(app, ["models", "import", "places365", str(ckpt.path), "--categories", str(ckpt.categories)])
    assert result.exit_code == 0, result.output
    assert model_store.read_manifest("places365")["onnx"]["exported_from"] == "pytorch"
    _assert_classify_top5_matches(_independent_pytorch_model(ckpt.path), [p for p, _ in places_samples])


@pytest.mark.slow
def test_2017_era_official_file_fetches_from_loopback(store, loopback_server, official_checkpoint_2017, places_samples, monkeypatch):
    monkeypatch.setenv("PPJAX_OFFLINE", "0")
    loopback_server.files[CKPT] = official_checkpoint_2017.path.read_bytes()
    loopback_server.files[CATS] = official_checkpoint_2017.categories.read_bytes()
    result = CliRunner().invoke(app, _fetch_args(loopback_server))
    assert result.exit_code == 0, result.output
    _assert_classify_top5_matches(_independent_pytorch_model(official_checkpoint_2017.path), [p for p, _ in places_samples[:8]])


def test_refused_checkpoint_is_one_line_naming_file_and_cause(store, official_checkpoint, tmp_path):
    import torch

    path = tmp_path / "whole_resnet.pth.tar"
    torch.save(official_checkpoint.model, path, _use_new_zipfile_serialization=False)
    result = CliRunner().invoke(
        app, ["models", "import", "places365", str(path), "--categories", str(official_checkpoint.categories)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(path) in line and "pickled ppjax.export.torch_resnet.ResNet object" in line


@pytest.mark.slow
def test_skipped_metadata_is_a_note_and_the_model_installs(store, official_checkpoint, tmp_path):
    from ..py2_checkpoint import Global, Reduce, write_2017_checkpoint

    path = tmp_path / "resnet50_places365.pth.tar"
    state_dict = {k: v.detach().numpy() for k, v in official_checkpoint.model.state_dict().items()}
    write_2017_checkpoint(path, state_dict, extra={"optimizer": Reduce(Global("torch.optim.sgd", "SGD"), ())})
    result = CliRunner().invoke(
        app, ["models", "import", "places365", str(path), "--categories", str(official_checkpoint.categories)]
    )
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: resnet50_places365.pth.tar: skipped checkpoint['optimizer']: a torch.optim.sgd.SGD object, not rebuilt"]


@pytest.mark.slow
def test_a_tampered_install_is_refused_naming_the_file(store, official_checkpoint, places_samples):
    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories)
    runner = CliRunner()
    assert runner.invoke(app, ["models", "verify"]).exit_code == 0
    weights_file = store / "models" / "places365" / model_store.WEIGHTS
    data = weights_file.read_bytes()
    weights_file.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(model_store.ModelStoreError, match=r"weights.safetensors: sha256 .* differs from the .* recorded at install"):
        model_store.load_model("places365")
    result = runner.invoke(app, ["classify", str(places_samples[0][0])])
    assert result.exit_code == 1 and "weights.safetensors: sha256" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["models", "verify", "places365"])
    assert result.exit_code == 1 and "weights.safetensors" in result.stderr


def test_a_later_load_reads_the_variables_shapes_instead_of_tracing_the_network(store, official_checkpoint, monkeypatch):
    """Tracing a network's init for its variables' shapes took half a second of every command's
    start; the first load keeps them in the model's folder, later ones read them; a damaged file is
    traced again."""
    import jax

    from ppjax.models import SHAPES

    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories)
    first = model_store.load_model("places365")
    kept = store / "models" / "places365" / SHAPES
    assert kept.is_file()

    def no_trace(*args, **kwargs):
        raise AssertionError("traced the network again")

    with monkeypatch.context() as m:
        m.setattr(jax, "eval_shape", no_trace)
        second = model_store.load_model("places365")
    assert jax.tree_util.tree_map(np.shape, second.variables) == jax.tree_util.tree_map(np.shape, first.variables)
    kept.write_text("{damaged")
    third = model_store.load_model("places365")
    assert jax.tree_util.tree_map(np.shape, third.variables) == jax.tree_util.tree_map(np.shape, first.variables)
    assert len(json.loads(kept.read_text())) == 1  # traced and kept again
