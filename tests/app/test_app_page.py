"""The page in Debian's chromium (Playwright), for what it says rather than what it protects: the
model's state when it is not ready, the status line agreeing with the cards, and Cancel. The worker
behind it is the stand-in of test_app_lifecycle.py; the real protection is in test_app_browser.py."""

from __future__ import annotations

import pytest

from .serving import png_bytes, serving
from .test_app_browser import CHROMIUM, _shot
from .test_app_lifecycle import CopyingWorker

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")


def _browser(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"],
    )  # fmt: skip


def _files(tmp_path, names):
    paths = []
    for n, name in enumerate(names):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(png_bytes(n))
    return [str(p) for p in paths]


def test_the_page_says_what_to_do_when_the_model_cannot_be_had(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from ppjax.app.model import ModelLoader

    def make(report):
        raise RuntimeError("places365 could not be fetched: no internet. Without internet, install it from a copy: ppjax models import places365 PATH.")

    loader = ModelLoader("places365", make)
    loader._run()
    with serving(tmp_path, CopyingWorker(), loader=loader) as (settings, _), playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{settings.port}/?token={settings.token}")
        banner = page.locator("#model-status")
        playwright.expect(banner).to_contain_text("ppjax models import places365", timeout=10000)
        page.set_input_files("#files", _files(tmp_path, ["a.png"]))
        playwright.expect(page.locator(".card[data-state=ready]")).to_have_count(1, timeout=10000)
        assert page.locator("#protect").is_disabled()
        _shot(page, "model-missing")
        browser.close()


def test_status_line_cards_and_cancel_agree(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    expect = playwright.expect
    stand_in = CopyingWorker()
    with serving(tmp_path, stand_in) as (settings, _), playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{settings.port}/?token={settings.token}")
        page.set_input_files("#files", _files(tmp_path, ["one.png", "two.png", "three.png"]))
        expect(page.locator(".card[data-state=ready]")).to_have_count(3, timeout=10000)
        page.click("#protect")
        expect(page.locator("#status")).to_have_text("Protecting: 0 of 3 done.", timeout=10000)
        stand_in.gate.set()  # one photo goes through before the cancel can
        expect(page.locator(".card[data-state=done]")).to_have_count(3, timeout=10000)
        expect(page.locator("#status")).to_contain_text("Done: 3 of 3 done", timeout=10000)

        page.click("#again")
        stand_in.gate.clear()
        page.set_input_files("#files", _files(tmp_path, ["four.png", "five.png"]))
        expect(page.locator(".card[data-state=ready]")).to_have_count(2, timeout=10000)
        page.click("#protect")
        expect(page.locator(".card[data-state=protecting]")).to_have_count(1, timeout=10000)
        page.click("#cancel")
        expect(page.locator("#status")).to_have_text("Cancelled: 0 of 2 written; the others were not.", timeout=10000)
        expect(page.locator(".card[data-state=cancelled]")).to_have_count(2)
        _shot(page, "cancelled")
        stand_in.gate.set()
        browser.close()


def test_photos_chosen_before_the_server_makes_the_batch_wait_for_it(tmp_path):
    """A busy server answers the page's "new batch" late; photos chosen meanwhile used to go to a batch
    that did not exist yet and were all refused (the CI failure of 2026-12-07 under load)."""
    playwright = pytest.importorskip("playwright.sync_api")
    expect = playwright.expect
    held = []
    with serving(tmp_path, CopyingWorker()) as (settings, _), playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.route("**/api/jobs", lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
        page.goto(f"http://127.0.0.1:{settings.port}/?token={settings.token}")
        expect(page.locator("#files")).to_be_attached()
        page.wait_for_timeout(300)
        assert len(held) == 1  # the batch is asked for and not answered yet
        page.set_input_files("#files", _files(tmp_path, ["one.png", "two.png"]))
        expect(page.locator(".card[data-state=uploading]")).to_have_count(2, timeout=10000)
        held[0].continue_()
        expect(page.locator(".card[data-state=ready]")).to_have_count(2, timeout=10000)
        expect(page.locator("#status")).to_contain_text("2 photos ready", timeout=10000)
        assert page.locator(".card[data-state=refused]").count() == 0
        browser.close()
