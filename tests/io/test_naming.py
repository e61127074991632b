"""Output names: inputs that would share an output get names of their own, by a rule that gives the
same names on every run and on any disk."""

from __future__ import annotations

import random
from pathlib import Path, PurePath

from hypothesis import given, settings
from hypothesis import strategies as st

from ppjax.io.naming import MAX_NAME_BYTES, collision_key, plan_names


def _plan(names, suffix_for=lambda s: ".jpg" if s.lower() in (".jpg", ".jpeg", ".heic") else ".png"):
    jobs = [(Path("in") / n, PurePath(n).with_suffix(suffix_for(PurePath(n).suffix))) for n in names]
    planned, renamed = plan_names(jobs)
    return {src.name: str(rel) for src, rel in planned}, {src.name: str(rel) for src, rel in renamed.items()}


def test_the_issues_pairs_get_readable_distinct_names():
    names, renamed = _plan(["a.png", "a.bmp", "b.jpg", "b.jpeg", "IMG_1234.HEIC", "IMG_1234.JPG", "c.gif"])
    assert names == {
        "a.png": "a.png", "a.bmp": "a (bmp).png", "b.jpg": "b.jpg", "b.jpeg": "b (jpeg).jpg",
        "IMG_1234.HEIC": "IMG_1234 (heic).jpg", "IMG_1234.JPG": "IMG_1234.jpg", "c.gif": "c.png",
    }  # fmt: skip
    # Each renamed input says the name it would have had.
    assert renamed == {"a.bmp": "a.png", "b.jpeg": "b.jpg", "IMG_1234.HEIC": "IMG_1234.jpg"}


def test_names_that_differ_only_in_case_or_normalisation_are_one_name():
    names, _ = _plan(["A.jpg", "a.jpg", "caf\u00e9.png", "cafe\u0301.png"])  # NFC and NFD spellings of café
    assert names["A.jpg"] == "A.jpg" and names["a.jpg"] == "a (2).jpg"
    assert names["caf\u00e9.png"] == "caf\u00e9.png" and names["cafe\u0301.png"] == "cafe\u0301 (2).png"


def test_a_generated_name_never_takes_another_inputs_plain_name():
    names, _ = _plan(["a.png", "a.bmp", "a (bmp).png"])
    assert names == {"a.png": "a.png", "a (bmp).png": "a (bmp).png", "a.bmp": "a (bmp 2).png"}


def test_folders_count_too_and_the_same_file_twice_is_one_input():
    jobs = [(Path("x/a.png"), PurePath("sub/a.png")), (Path("y/a.bmp"), PurePath("Sub/a.png")), (Path("x/a.png"), PurePath("sub/a.png"))]
    planned, renamed = plan_names(jobs)
    assert [str(rel) for _, rel in planned] == ["sub/a.png", "Sub/a (bmp).png"]
    assert renamed == {Path("y/a.bmp"): PurePath("Sub/a.png")}


def test_long_names_are_shortened_at_a_character_boundary():
    long = "\U0001f600" * 150 + ".jpg"  # 604 bytes: more than any disk takes
    names, renamed = _plan([long, "\U0001f600" * 150 + ".jpeg"])
    for name in names.values():
        assert len(name.encode()) <= MAX_NAME_BYTES and name.endswith(".jpg")
        name.encode().decode("utf-8")  # whole characters only
    assert len({collision_key(n) for n in names.values()}) == 2 and set(renamed) == set(names)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "A", "b", "a (bmp)", "a (2)", "IMG_1", "img_1", "x"]), min_size=1, max_size=12),
       st.lists(st.sampled_from([".png", ".bmp", ".jpg", ".jpeg", ".JPG", ".heic", ".HEIC", ".tif"]), min_size=12, max_size=12),
       st.randoms())  # fmt: skip
def test_names_are_distinct_and_do_not_depend_on_anything_but_the_inputs(stems, suffixes, rnd):
    files = list(dict.fromkeys(stem + suffix for stem, suffix in zip(stems, suffixes)))
    names, _ = _plan(files)
    assert len({collision_key(n) for n in names.values()}) == len(files)  # never two outputs of one name
    assert _plan(list(files)) == _plan(files)  # the same on every run
    random.Random(rnd.random()).shuffle(files)
    # Another listing order keeps every uncontested name; only the choice among equals can move.
    shuffled, _ = _plan(files)
    for name in files:
        if not any(collision_key(PurePath(o).with_suffix("")) == collision_key(PurePath(name).with_suffix("")) for o in files if o != name):
            assert shuffled[name] == names[name]
