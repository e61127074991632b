"""Ground-truth label lists in the formats the task and its data come in.

Accepted, detected per file:

* ``file,label`` CSV, quoted or not, with or without a header row (MediaEval ``MEPP18val.csv``,
  ``MEPP19test_manual.csv``): CRLF line ends and a UTF-8 BOM are fine;
* ``file label`` whitespace-separated (Places365 devkit ``places365_val.txt``);
* a CSV with a header naming an image column (``file``, ``filename``, ``image``, ``ImageId``) and
  a label column (``label``, or ``TrueLabel``, which the ImageNet-compatible set counts from 1 and
  is converted to the 0-based class index).

Images are keyed by :func:`image_key`: the Places365 validation name when the file name contains
one (so ``run1_Places365_val_00000001.png`` finds ``Places365_val_00000001.jpg``), else the stem.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

__all__ = ["LabelsError", "image_key", "read_labels"]

_PLACES_NAME = re.compile(r"Places365_val_\d{8}")
_FILE_COLUMNS = ("file", "filename", "image", "imageid")
_LABEL_COLUMNS = {"label": 0, "truelabel": -1}  # column name -> offset to the 0-based index


class LabelsError(ValueError):
    pass


def image_key(name: str | Path) -> str:
    """Pairing key of an image file name (see module docstring)."""
    name = Path(name).name
    m = _PLACES_NAME.search(name)
    return m.group(0) if m else Path(name).stem


def read_labels(path: str | Path) -> dict[str, int]:
    """``{image key: 0-based class index}`` from a label file in any supported format."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelsError(f"{path}: cannot read ({e})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise LabelsError(f"{path}: empty label file")
    delimited = "," in lines[0]
    rows = list(csv.reader(io.StringIO("\n".join(lines)))) if delimited else [line.split() for line in lines]
    header = [c.strip().lower() for c in rows[0]]
    file_col = next((header.index(c) for c in _FILE_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    if file_col is not None and label_col is not None:
        offset = _LABEL_COLUMNS[header[label_col]]
        body, start = rows[1:], 2
    else:
        file_col, label_col, offset = 0, 1, 0
        body, start = rows, 1
        if len(rows[0]) >= 2 and not rows[0][1].strip().lstrip("-").isdigit():
            body, start = rows[1:], 2  # an unrecognised header row
    labels: dict[str, int] = {}
    for lineno, row in enumerate(body, start):
        if len(row) <= max(file_col, label_col):
            raise LabelsError(f"{path}: line {lineno} has no label (a file list without labels? use places365_val.txt)")
        value = row[label_col].strip()
        if not value.lstrip("-").isdigit():
            raise LabelsError(f"{path}: line {lineno}: label {value!r} is not a class index")
        labels[image_key(row[file_col].strip())] = int(value) + offset
    if not labels:
        raise LabelsError(f"{path}: no labels found")
    return labels
