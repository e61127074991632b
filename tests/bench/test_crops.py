"""`ppjax bench crops`: the window it cuts, and its page."""

import numpy as np

from ppjax.bench.crops import SETTINGS, _page, worst_window


def test_worst_window_finds_the_most_visible_square():
    delta_e = np.zeros((300, 400), np.float32)
    delta_e[192:256, 96:160] = 3.0  # a patch a 64-pixel window on its 32-pixel grid covers exactly
    delta_e[0:10, 0:10] = 9.0  # brighter, but smaller: less in total
    assert worst_window(delta_e, 64) == (192, 96)
    assert worst_window(delta_e[:50, :50], 64) == (0, 0)  # smaller than the window: its corner


def test_page_names_every_setting_and_figure():
    settings = [{"setting": name, "psnr": 39.0, "ciede2000": 0.9, "ciede2000_p95": 1.5, "blocks_seen": 0.0,
                 "words": "not visible side by side", "protected": i != 1} for i, (name, _) in enumerate(SETTINGS)]  # fmt: skip
    figures = {"model": "efficientnet-lite0", "crop": 192, "settings": [n for n, _ in SETTINGS],
               "photos": [{"photo": "Grey.jpg", "size": [1600, 2560], "window": [96, 480], "settings": settings}]}  # fmt: skip
    page = _page(figures)
    assert "## Grey.jpg (2560x1600, window at 480,96)" in page
    assert "![original](Grey/original.png)" in page and "![mid (the default)](Grey/mid.png)" in page
    assert page.count("0.90 / 1.50, 0% seen, 39.0 dB") == len(SETTINGS) and "NOT protected" in page
