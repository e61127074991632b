"""Photo edits as pure JAX functions: tone, curves, colour grade, and named looks.

Every edit takes sRGB pixels in [0, 1] and parameters that are a few numbers with the ranges of a
photo app's sliders (:mod:`.sliders`); zero is the identity. Because the parameters do not depend
on the image's size, an edit found on a small working copy is applied exactly to the full photo
(:func:`apply_full`), and one set of parameters can serve many photos (a look).
"""

from ppjax.edits.pipeline import CHUNK, PARTS, EditPipeline, apply_full, pipeline

__all__ = ["CHUNK", "PARTS", "EditPipeline", "apply_full", "pipeline"]
