"""`ppjax classify` on a batch that mixes good photos and bad files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ppjax.store as model_store
from ppjax.cli import app


@pytest.fixture
def installed(store, official_checkpoint):
    model_store.import_files("places365", official_checkpoint.path, categories=official_checkpoint.categories)
    return store


@pytest.mark.slow
def test_bad_files_are_reported_and_the_batch_goes_on(installed, places_samples, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = [p for p, _ in places_samples[:3]]
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.png").write_bytes(good[1].read_bytes()[:300])
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    result = CliRunner().invoke(app, ["classify", "--json", "--batch-size", "2", str(folder)])
    assert result.exit_code == 1
    printed = [json.loads(line)["file"] for line in result.stdout.splitlines()]
    assert sorted(printed) == sorted(str(folder / p.name) for p in good)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and any("empty.jpg: empty file" in e for e in errors) and any("broken.png" in e for e in errors)
    assert "2 of 5 files could not be read" in result.stderr


@pytest.mark.slow
def test_other_sizes_and_resize_option(installed, places_samples, tmp_path):
    from PIL import Image

    src = places_samples[0][0]
    big = tmp_path / "big.png"
    Image.open(src).resize((320, 300)).save(big)
    runner = CliRunner()
    as_is = json.loads(runner.invoke(app, ["classify", "--json", str(big)]).stdout)
    resized = json.loads(runner.invoke(app, ["classify", "--json", "--size", "256", str(big)]).stdout)
    assert as_is["top"] != resized["top"]  # a different input went through the network
    assert len(as_is["top"]) == 5


@pytest.mark.slow
def test_no_images_is_a_usage_error(installed, tmp_path):
    result = CliRunner().invoke(app, ["classify", str(tmp_path)])
    assert result.exit_code == 2 and "no image files" in result.stderr
