"""Judge written files through the real channel's panel, with the protector's own classifiers.

Each decoded file goes through every :class:`~ppjax.ops.channel.Variant` of the panel on Pillow
(:func:`ppjax.io.real_channel.apply_real_panel`; the variants are computed on a thread pool, since
Pillow releases the GIL while it resizes and encodes). The classifiers then see each variant in
batches of fixed shapes, so that judging compiles a handful of programs for any photo sizes: the
attacker's views (224x224) in chunks of :data:`CHUNK`, and the photo classified whole (small
photos) on its working canvas (:meth:`ppjax.protect.Protector.layout`).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from ppjax.io.batching import pad_batch
from ppjax.io.images import to_float01
from ppjax.io.real_channel import apply_real_panel
from ppjax.ops.channel import Variant, panel
from ppjax.protect.timings import NO_CLOCK

__all__ = ["CHUNK", "Judged", "PanelJudge"]

#: Views classified per call (the last chunk padded): one program for every panel size. Small, since
#: a CPU takes as long per image in small batches (Lite0 at 224: 9.8 ms an image alone, 10.8 in fours,
#: 13.4 in twelves), and the 12, 24 or 36 resized views of a panel, or the 9 distinct ones of a photo
#: whose short side is 256 (:func:`_distinct`), then waste no padding.
CHUNK = 3
#: Whole-photo variants per call (as written, JPEG q90 and q75).
_WHOLE = 3


@dataclass
class Judged:
    """One photo's panel: its ``variants`` and the classes each classifier gives the original
    through each (``labels``: one (V,) array per classifier)."""

    variants: tuple[Variant, ...]
    labels: tuple[np.ndarray, ...]


def _distinct(views: list[np.ndarray], indices: list[int], labels=None) -> tuple[list[int], dict[int, int]]:
    """(the ``indices`` whose view differs from every earlier one's, {index of a copy: index of the
    first view with the same shape and bytes}, and with ``labels`` (one array per classifier) the
    same classes to be judged against). The demo's resize of a photo whose short side is already 256
    is no resize, so its bilinear and bicubic variants are the same pixels."""
    first: dict[tuple, int] = {}
    kept, copies = [], {}
    for i in indices:
        against = () if labels is None else tuple(int(lab[i]) for lab in labels)
        key = (views[i].shape, views[i].dtype.str, views[i].tobytes(), against)
        if key in first:
            copies[i] = first[key]
        else:
            first[key] = i
            kept.append(i)
    return kept, copies


class PanelJudge:
    """Leads of written files through the real panel of ``channel``, against what the classifiers
    of ``protector`` infer from the original through the same variant."""

    def __init__(self, protector, pool: Executor | None = None, clock=NO_CLOCK):
        self.protector = protector
        self.pool = pool
        self.clock = clock

    def _views(self, rgb: np.ndarray, variants) -> list[np.ndarray]:
        with self.clock("panel: real channel variants (Pillow, libjpeg)"):
            return apply_real_panel(rgb, variants, self.pool)

    def _classify(self, views: list[np.ndarray], variants, labels=None) -> tuple:
        """(labels per classifier, or leads against ``labels``) of each variant's view."""
        with self.clock("panel: classifying the variants"):
            return self._classify_views(views, variants, labels)

    def _classify_views(self, views, variants, labels):
        whole = [i for i, v in enumerate(variants) if v.view == "exact"]
        resized, copies = _distinct(views, [i for i, v in enumerate(variants) if v.view != "exact"], labels)
        n = len(variants)
        out_labels = [np.zeros(n, np.int64) for _ in self.protector.targets]
        leads = np.zeros(n, np.float32)
        for start in range(0, len(resized), CHUNK):
            idx = resized[start : start + CHUNK]
            x = to_float01(pad_batch(np.stack([views[i] for i in idx]), CHUNK))
            if labels is None:
                for t, found in enumerate(self.protector.top1(x)):
                    out_labels[t][idx] = found[: len(idx)]
            else:
                leads[idx] = self.protector.panel_leads(x, [pad_batch(lab[idx], CHUNK) for lab in labels])[: len(idx)]
        for copy, of in copies.items():  # the same pixels against the same classes: the same verdict, computed once
            leads[copy] = leads[of]
            for found in out_labels:
                found[copy] = found[of]
        if whole:
            h, w = views[whole[0]].shape[:2]
            canvas = self.protector.canvas_for(h, w)
            x, geometry = self.protector.layout(canvas, [views[i] for i in whole] + [views[whole[-1]]] * (_WHOLE - len(whole)))
            x = to_float01(x)
            if labels is None:
                for t, found in enumerate(self.protector.canvas_top1(x, geometry)):
                    out_labels[t][whole] = found[: len(whole)]
            else:
                picked = [pad_batch(lab[whole], _WHOLE) for lab in labels]
                leads[whole] = self.protector.canvas_leads(x, geometry, picked)[: len(whole)]
        return tuple(out_labels) if labels is None else leads

    def original(self, rgb: np.ndarray) -> Judged:
        """The panel of an (H, W, 3) uint8 original and its classes through each variant (once per
        photo: they do not change between rounds)."""
        variants = panel(self.protector.channel, *rgb.shape[:2])
        return Judged(variants, self._classify(self._views(rgb, variants), variants))

    def leads(self, written: np.ndarray, judged: Judged) -> np.ndarray:
        """(V,) leads of the decoded ``written`` file through each variant of ``judged`` (> 0: protected there)."""
        return self._classify(self._views(written, judged.variants), judged.variants, judged.labels)
