"""The panel's judge classifies each distinct view once and gives its copies the same verdict."""

import numpy as np

from ppjax.io.real_channel import apply_real_panel
from ppjax.ops.channel import panel
from ppjax.protect.panel import CHUNK, PanelJudge, _distinct


class _Counting:
    """A stand-in classifier: a class and a lead that depend on every pixel, and a count of views."""

    targets = (None,)

    def __init__(self):
        self.views = 0

    @staticmethod
    def _class(x):
        return (np.round(x.reshape(len(x), -1).astype(np.float64).sum(1) * 7.0)).astype(np.int64) % 365

    def top1(self, x):
        self.views += len(x)
        return (self._class(x),)

    def panel_leads(self, x, labels):
        self.views += len(x)
        return (self._class(x) - labels[0]).astype(np.float32) + x.mean((1, 2, 3))


def test_distinct_keeps_first_views_and_maps_copies():
    a, b = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)
    views = [a, b, a.copy(), b.copy(), a[:2].copy()]
    assert _distinct(views, [0, 1, 2, 3, 4]) == ([0, 1, 4], {2: 0, 3: 1})
    # Judged against other classes, the same pixels are another question.
    labels = (np.array([5, 5, 6, 5, 5]),)
    assert _distinct(views, [0, 1, 2, 3, 4], labels) == ([0, 1, 2, 4], {3: 1})


def test_a_256_photo_is_classified_on_its_distinct_views_with_the_same_verdicts():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    variants = tuple(v for v in panel("social", 256, 256) if v.view != "exact")
    views = apply_real_panel(rgb, variants, None)
    kept, copies = _distinct(views, list(range(len(variants))))
    assert len(variants) == 12 and len(kept) == 9 and len(copies) == 3  # the demo's bilinear and bicubic agree
    assert all(variants[c].view == variants[o].view == "demo" for c, o in copies.items())

    judge = PanelJudge(_Counting())
    labels = judge._classify_views(views, variants, None)
    assert judge.protector.views == len(kept)  # 9 distinct views in chunks of 3: no padding, no copy
    assert CHUNK == 3
    every = _Counting()
    expected = every._class(np.stack(views).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(labels[0], expected)

    written = np.clip(rgb.astype(np.int16) + rng.integers(-3, 4, rgb.shape), 0, 255).astype(np.uint8)
    seen = apply_real_panel(written, variants, None)
    leads = judge._classify_views(seen, variants, labels)
    x = np.stack(seen).astype(np.float32) / 255.0
    np.testing.assert_allclose(leads, every.panel_leads(x, [labels[0]]), rtol=1e-6)
