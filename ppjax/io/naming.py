"""Output names that never collide: one output per input, the same names on every run.

Two inputs can map to one output path: ``a.png`` and ``a.bmp`` both become ``a.png``, ``b.jpg`` and
``b.jpeg`` both ``b.jpg``, an iPhone's ``IMG_1.HEIC`` beside its exported ``IMG_1.JPG`` both
``IMG_1.jpg``; and ``A.jpg`` and ``a.jpg`` are one file on a case-insensitive disk (macOS, Windows)
or once extracted from a ZIP there. :func:`plan_names` settles every clash before anything is
written:

- paths are compared as such a disk compares them: ignoring case, and with Unicode normalised (a
  name typed on a Mac and one from Linux can differ in bytes and be the same name);
- among inputs that clash, the one whose own suffix is the output's keeps the plain name
  (``a.png``, ``b.jpg``, ``IMG_1.JPG``), else the first in input order;
- every other one gets its own suffix in brackets, ``a (bmp).png``, ``b (jpeg).jpg``,
  ``IMG_1 (heic).jpg``, or a number where the suffixes are the same, ``a (2).jpg``; a name that is
  still taken (by another input's plain name, say) gets a number after the suffix, ``a (bmp 2).png``;
- a name longer than :data:`MAX_NAME_BYTES` is shortened (the staging names beside it must fit too).

The rule depends only on the inputs, so a second run of the same command plans the same names and
resumes each input into its own output. The same file named twice is one input.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from pathlib import Path, PurePath
from typing import Sequence

__all__ = ["collision_key", "plan_names", "fit_name_bytes", "MAX_NAME_BYTES", "private_name", "names_with_capture_time"]

#: The longest output name, in UTF-8 bytes. File systems allow 255; the staging and temporary names
#: written beside an output add up to about 60 more (see :func:`ppjax.protect.manifest.staging_path`).
MAX_NAME_BYTES = 180


def collision_key(path: PurePath | str) -> str:
    """The form in which two paths are the same file on a case-insensitive, normalising disk."""
    return unicodedata.normalize("NFC", PurePath(path).as_posix()).casefold()


def fit_name_bytes(stem: str, suffix: str, limit: int = MAX_NAME_BYTES) -> str:
    """``stem + suffix``, the stem cut at a character boundary so the name fits ``limit`` UTF-8 bytes."""
    room = limit - len(suffix.encode())
    data = stem.encode()
    if len(data) > room:
        stem = data[: max(room, 1)].decode("utf-8", errors="ignore").rstrip() or "photo"
    return stem + suffix


def plan_names(jobs: Sequence[tuple[Path, PurePath]]) -> tuple[list[tuple[Path, PurePath]], dict[Path, PurePath]]:
    """``(jobs, renamed)``: each (input, wanted relative output path) of ``jobs`` with an output
    path no other job has (see the module's rule), in input order, the same input given twice kept
    once; ``renamed`` maps each input that did not get its wanted path to that path."""
    unique: list[tuple[Path, PurePath]] = []
    wanted: list[PurePath] = []
    seen: set[str] = set()
    for src, rel in jobs:
        identity = os.path.normcase(os.path.abspath(src))
        if identity not in seen:
            seen.add(identity)
            rel = PurePath(rel)
            wanted.append(rel)
            unique.append((Path(src), rel.with_name(fit_name_bytes(rel.stem, rel.suffix))))

    groups: dict[str, list[int]] = {}
    for n, (_, rel) in enumerate(unique):
        groups.setdefault(collision_key(rel), []).append(n)
    names: list[PurePath | None] = [None] * len(unique)
    taken: set[str] = set()
    for key, members in groups.items():
        rel = unique[members[0]][1]
        keeper = min(members, key=lambda n: (unique[n][0].suffix.lower() != rel.suffix.lower(), n))
        names[keeper] = unique[keeper][1]
        taken.add(key)

    for n, (src, rel) in enumerate(unique):
        if names[n] is None:
            names[n] = _free_name(rel, src.suffix, taken)
            taken.add(collision_key(names[n]))
    renamed = {src: want for (src, _), want, name in zip(unique, wanted, names) if name != want}
    return [(src, name) for (src, _), name in zip(unique, names)], renamed


def _free_name(rel: PurePath, source_suffix: str, taken: set[str]) -> PurePath:
    """The first of ``stem (tag)``, ``stem (tag 2)``, ... (or ``stem (2)``, ``stem (3)``, ...) not
    in ``taken``; the tag is the input's own suffix where it differs from the output's."""
    tag = source_suffix.lower().lstrip(".")
    tag = tag if tag and tag != rel.suffix.lower().lstrip(".") else ""
    for n in range(1 if tag else 2, len(taken) + 3):
        label = f"{tag} {n}" if tag and n > 1 else tag or str(n)
        candidate = rel.with_name(fit_name_bytes(rel.stem, f" ({label}){rel.suffix}"))
        if collision_key(candidate) not in taken:
            return candidate
    raise AssertionError("unreachable: more candidates than taken names")


#: A capture date and time in a file name, as phones and messengers write them: IMG_20261205_143012,
#: PXL_20261205_143012345, 20261205_143012, IMG-20261205-WA0001 (a date alone), Screenshot
#: 2026-12-05 at 14.30.12.
_CAPTURE_TIME = re.compile(r"(?<!\d)(19|20)\d{2}[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])(?!\d)|(?<!\d)(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")


def names_with_capture_time(paths) -> list:
    """The paths whose file name carries a calendar date (with or without the time): what a
    platform reads off a shared file even when its metadata is gone."""
    return [p for p in paths if _CAPTURE_TIME.search(PurePath(p).stem)]


def private_name(rel: PurePath, key: bytes) -> PurePath:
    """The output name ``--private-names`` gives the photo that would be written at ``rel`` (a path
    below the output folder): ``photo-`` and twelve hex digits of an HMAC-SHA256 of ``rel`` under
    this computer's private key, with ``rel``'s suffix, in the folder itself. The same input gets
    the same name on every run here, and nobody without the key can tell the original name (or
    the date and time in it) from it, not even by trying every second of a year."""
    mac = hmac.new(key, collision_key(rel).encode(), hashlib.sha256).hexdigest()[:12]
    return PurePath(f"photo-{mac}{PurePath(rel).suffix.lower()}")
