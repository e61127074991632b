"""The MediaEval 2019 Pixel Privacy submission rules, checked before a run is scored.

A run is a zip (or folder) of the protected test images, one per image of the task's test list
(``MEPP19test.csv``: 600 Places365 validation images), named ``<runcode>_Places365_val_XXXXXXXX.jpg``
with one run code, 256x256 pixels, readable. Anything else in the run is an extra.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path

from ppjax.io import ImageReadError, read_image
from ppjax.evaluate.labels import LabelsError, image_key

__all__ = ["RUN_NAME", "read_test_list", "check_run"]

RUN_NAME = re.compile(r"(?P<runcode>[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*)_(?P<image>Places365_val_\d{8})\.jpg")


def read_test_list(path: str | Path) -> list[str]:
    """Places365 names (without extension) of a task test list such as ``MEPP19test.csv``."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelsError(f"{path}: cannot read the test list ({e})") from None
    names = []
    for line in text.splitlines():
        field = line.split(",")[0].strip().strip('"')
        if field and field.lower() != "file":
            names.append(image_key(field))
    return names


def _members(run: Path) -> list[tuple[str, bytes | Path]]:
    if run.is_dir():
        return [(str(p.relative_to(run)), p) for p in sorted(run.rglob("*")) if p.is_file()]
    with zipfile.ZipFile(run) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist() if not i.is_dir()]


def check_run(run: str | Path, test_list: list[str], size: int = 256) -> list[str]:
    """Every violation of the submission rules, one line each; empty when the run is valid."""
    run = Path(run)
    if not run.is_dir() and not zipfile.is_zipfile(run):
        return [f"{run}: neither a folder nor a zip file"]
    expected = set(test_list)
    violations, seen, runcodes = [], {}, set()
    for name, content in _members(run):
        base = Path(name).name
        m = RUN_NAME.fullmatch(base)
        if not m:
            violations.append(f"{name}: not named <runcode>_Places365_val_XXXXXXXX.jpg")
            continue
        key = m.group("image")
        runcodes.add(m.group("runcode"))
        if key not in expected:
            violations.append(f"{name}: {key} is not in the test list (extra)")
            continue
        if key in seen:
            violations.append(f"{name}: {key} appears twice (also {seen[key]})")
            continue
        seen[key] = name
        if isinstance(content, bytes):
            with tempfile.NamedTemporaryFile(suffix=".jpg") as tmp:
                tmp.write(content)
                tmp.flush()
                violations += _check_image(name, Path(tmp.name), size)
        else:
            violations += _check_image(name, content, size)
    if len(runcodes) > 1:
        violations.append(f"more than one run code: {', '.join(sorted(runcodes))}")
    missing = sorted(expected - seen.keys())
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        violations.append(f"{len(missing)} of the {len(expected)} test images are missing: {shown}")
    return violations


def _check_image(name: str, path: Path, size: int) -> list[str]:
    try:
        img = read_image(path)
    except ImageReadError as e:
        return [f"{name}: unreadable ({e.reason})"]
    h, w = img.size
    return [] if (h, w) == (size, size) else [f"{name}: {w}x{h} pixels, the task requires {size}x{size}"]
