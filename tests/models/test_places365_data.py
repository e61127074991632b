"""The package's Places365 facts against the real task files in ../shared (BOM, CRLF, spaces)."""

from __future__ import annotations

import pytest

from ppjax.models.places365 import SENSITIVE_CATEGORIES, CategoriesError, parse_categories

from ..conftest import shared_path


def test_sensitive_group_matches_mediaeval_list():
    text = shared_path("mediaeval", "MEPP18senscats.txt").read_text(encoding="utf-8")
    assert text.startswith("\ufeff")  # the real file's quirk, which parsing must survive
    rows = [line.lstrip("\ufeff").split() for line in text.splitlines() if line.strip()]
    assert {name: int(idx) for name, idx in rows} == SENSITIVE_CATEGORIES
    assert len(SENSITIVE_CATEGORIES) == 60


def test_parse_official_categories_file_and_its_variants():
    raw = shared_path("places365", "categories_places365.txt").read_text(encoding="utf-8")
    names = parse_categories(raw)
    assert len(names) == 365 and names[0] == "/a/airfield" and names[52] == "/b/bedroom"
    crlf_bom = "\ufeff" + raw.replace("\n", " \r\n")
    assert parse_categories(crlf_bom) == names


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lines: lines[:-1], "indices 0..364"),
        (lambda lines: lines + [lines[3]], "appears twice"),
        (lambda lines: [lines[1].split()[0] + " 0", lines[0].split()[0] + " 1", *lines[2:]], "wrong index"),
        (lambda lines: ["garbage", *lines], "line 1"),
    ],
)
def test_parse_rejects_wrong_lists(edit, message):
    lines = shared_path("places365", "categories_places365.txt").read_text().splitlines()
    with pytest.raises(CategoriesError, match=message):
        parse_categories("\n".join(edit(lines)))
