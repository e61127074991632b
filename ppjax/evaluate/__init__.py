"""Judging a run: protected images paired with their originals (:mod:`.pairing`), classified by
independent engines (the JAX port, and ONNX Runtime on the graph exported from PyTorch;
:mod:`.engines`), with quality and appeal (:mod:`.run`), into a typed :class:`~.report.Report`
rendered as JSON, Markdown (:mod:`.report`) or an HTML page (:mod:`.html`); labels in every task
format (:mod:`.labels`) and the MediaEval 2019 submission rules (:mod:`.mediaeval`).
"""

from ppjax.evaluate.pairing import Pair, PairingError, jpeg_roundtrip, open_protected, pair_images
from ppjax.evaluate.report import Report, markdown_summary
from ppjax.evaluate.run import evaluate

__all__ = ["Pair", "PairingError", "Report", "evaluate", "jpeg_roundtrip", "markdown_summary", "open_protected", "pair_images"]
