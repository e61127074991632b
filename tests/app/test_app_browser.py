"""`ppjax app` in a real headless browser (Debian's chromium, driven by Playwright): a person drops
real photos, presses one button and downloads the ZIP; the page never reaches past 127.0.0.1; what
is refused is said in the page, and the other photos still finish. Screenshots of the page in its
states go to tests' ``screenshots`` folder."""

from __future__ import annotations

import io
import os
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import shared_path
from .serving import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parent / "screenshots"
#: PPJAX_TEST_12MP=1: the JPEG is a 12-megapixel phone photo (4032x3024, a 1.8 MB JPEG), as the app
#: issue's goal names; CI drops the 2560x1600 camera JPEG, which exercises the same path in less time.
PHONE_12MP = bool(os.environ.get("PPJAX_TEST_12MP"))
UPLOAD_CAP_MB = 8 if PHONE_12MP else 3


@pytest.fixture(scope="module")
def protecting() -> threading.Event:
    """Set while the server's worker thread is inside a job (compiling or protecting)."""
    return threading.Event()


@pytest.fixture(scope="module")
def server(lite0_store, protecting, tmp_path_factory):
    """The app's server on a free loopback port, protecting against the real EfficientNet-Lite0."""
    pytest.importorskip("uvicorn")
    import ppjax.store as model_store
    from ppjax.app.protection import Protection

    root, _ = lite0_store
    protection = Protection("efficientnet-lite0", lambda name: model_store.load_model(name, root=root), model_store.programs_folder(root))

    def run_job(job):
        protecting.set()
        try:
            protection(job)
        finally:
            protecting.clear()

    with serving(tmp_path_factory.mktemp("app"), run_job, max_upload_mb=UPLOAD_CAP_MB) as (settings, _worker):
        yield settings


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """A phone-size JPEG, an iPhone HEIC, a PNG, a file that is not a photo and one too large."""
    pytest.importorskip("pillow_heif")
    folder = tmp_path_factory.mktemp("photos")
    full = sorted(shared_path("fullres").glob("*.jpg"))
    jpeg = folder / "lake pier.jpg"
    if PHONE_12MP:  # the camera photo enlarged to a phone's 12 MP and saved as a phone saves it
        Image.open(full[0]).convert("RGB").resize((4032, 3024), Image.Resampling.LANCZOS).save(jpeg, quality=90)
    else:
        shutil.copy(full[0], jpeg)  # 2560x1600, as written by a camera
    heic = folder / "IMG_0042.HEIC"
    Image.open(full[5]).convert("RGB").resize((640, 400), Image.Resampling.LANCZOS).save(heic, format="HEIF", quality=90)
    twin = folder / "IMG_0042.JPG"  # a phone's exported copy beside its HEIC: both would be IMG_0042.jpg
    Image.open(full[6]).convert("RGB").resize((640, 400), Image.Resampling.LANCZOS).save(twin, quality=90)
    png = folder / "cups.png"
    shutil.copy(sorted(shared_path("imagenet_compatible", "images").glob("*.png"))[7], png)  # 299x299
    bad = folder / "notes.jpg"
    bad.write_text("not a photo at all\n")
    big = folder / "huge.png"
    side = 2000 if PHONE_12MP else 1200
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(big)  # over the cap
    assert big.stat().st_size > UPLOAD_CAP_MB * 1024 * 1024
    return {"jpeg": jpeg, "heic": heic, "twin": twin, "png": png, "bad": bad, "big": big}


def _shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.core
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_a_person_protects_three_photos_and_downloads_the_zip(server, protecting, photos, lite0_store, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    import httpx

    expect = playwright.expect

    import ppjax.store as model_store
    from ppjax.evaluate.engines import OnnxClassifier
    from ppjax.io.real_channel import apply_real
    from ppjax.ops.channel import Variant

    base = f"http://127.0.0.1:{server.port}"
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{base}/?token={server.token}")
        expect(page.locator("#protect")).to_be_visible()
        _shot(page, "1-empty")

        page.set_input_files("#files", [str(photos[k]) for k in ("jpeg", "heic", "twin", "png", "bad", "big")])
        page.wait_for_selector(".card[data-state]", timeout=5000)  # a card per file before any upload ends
        expect(page.locator(".card[data-state=ready]")).to_have_count(4, timeout=30000)
        expect(page.locator(".card[data-state=refused]")).to_have_count(2, timeout=30000)
        refused = page.locator(".card[data-state=refused] .message").all_inner_texts()
        assert any("notes.jpg" in m and "not a photo" in m for m in refused), refused
        assert any("huge.png" in m and f"{server.max_upload_mb} MB" in m for m in refused), refused
        _shot(page, "2-ready-and-refused")

        page.click("#protect")
        page.wait_for_selector(".card[data-state=queued], .card[data-state=compiling], .card[data-state=protecting]", timeout=5000)
        # The server answers other requests while the job runs: the answer comes back before the
        # worker has left the job (a server blocked by the job would answer only after it).
        assert protecting.wait(timeout=120)
        assert httpx.post(f"{base}/api/jobs", headers={"X-Ppjax-Token": server.token}, timeout=60).status_code == 200
        assert protecting.is_set()
        _shot(page, "3-working")
        expect(page.locator(".card[data-state=done]")).to_have_count(4, timeout=600000)
        expect(page.locator("#status")).to_contain_text("Done: 4 of 4 done")
        renamed = page.locator(".card[data-state=done]", has_text="IMG_0042.HEIC").locator(".saved-as")
        expect(renamed).to_have_text("Saved as IMG_0042 (heic).jpg: another photo of this batch is also called IMG_0042.jpg.")
        assert page.locator("#again").is_visible()
        verdicts = page.locator(".card[data-state=done] .verdict").all_inner_texts()
        assert len(verdicts) == 4 and all(v for v in verdicts)
        for img in page.locator(".card[data-state=done] .compare img").all():
            expect(img).to_have_js_property("complete", True, timeout=20000)
            expect(img).not_to_have_js_property("naturalWidth", 0)
        _shot(page, "4-done")
        with page.expect_download() as download:
            page.click("#zip")
        archive = tmp_path / "protected.zip"
        download.value.save_as(archive)
        context.close()
        browser.close()

    # No request ever left 127.0.0.1.
    assert requests and all(url.startswith(base + "/") for url in requests), [u for u in requests if not u.startswith(base)]

    root, model = lite0_store
    judge = OnnxClassifier(model_store.model_dir("efficientnet-lite0", root) / model_store.ONNX).logits
    with zipfile.ZipFile(archive) as z:
        names = sorted(z.namelist())
        assert names == ["IMG_0042 (heic).jpg", "IMG_0042.jpg", "cups.png", "lake pier.jpg"]  # the original names, each in its own kind
        for name in names:
            img = Image.open(io.BytesIO(z.read(name)))
            img.load()
            assert not img.getexif().get_ifd(0x8825) and not img.getexif()  # no GPS, no metadata at all
            source = {"IMG_0042 (heic).jpg": photos["heic"], "IMG_0042.jpg": photos["twin"], "cups.png": photos["png"], "lake pier.jpg": photos["jpeg"]}[name]
            original = np.asarray(Image.open(source).convert("RGB"))
            written = np.asarray(img.convert("RGB"))
            assert written.shape == original.shape
            view = Variant("demo", "bilinear")  # the Places365 demo's 256 + centre 224, as written
            before = judge(apply_real(original, view)[None] / np.float32(255)).argmax()
            after = judge(apply_real(written, view)[None] / np.float32(255)).argmax()
            assert before != after, name


def test_requests_without_the_token_or_from_another_host_are_refused(server):
    httpx = pytest.importorskip("httpx")
    base = f"http://127.0.0.1:{server.port}"
    assert httpx.get(f"{base}/").status_code == 403
    assert httpx.post(f"{base}/api/jobs").status_code == 403
    assert httpx.get(f"{base}/?token=wrong").status_code == 403
    # A page from elsewhere, resolved to 127.0.0.1 by DNS rebinding, names another host.
    assert httpx.get(f"{base}/?token={server.token}", headers={"Host": f"evil.example:{server.port}"}).status_code == 403
    assert httpx.post(f"{base}/api/jobs", headers={"X-Ppjax-Token": server.token, "Origin": "http://evil.example"}).status_code == 403
    assert httpx.get(f"{base}/?token={server.token}").status_code == 200
    assert httpx.get(f"{base}/static/app.js").status_code == 200  # the page's own code, no secret in it
    page = httpx.get(f"{base}/?token={server.token}").text
    assert "http://" not in page.replace(f"http://127.0.0.1:{server.port}", "") and "https://" not in page  # nothing from elsewhere
