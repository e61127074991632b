"""`ppjax protect` at the edges a privacy tool must not break: inputs whose outputs would share a
name, a second run over them, a PostScript file among the photos, and "keep camera details" on a
JPEG that carries a location in every layout (checked by exiftool, an independent reader)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ppjax.cli import app

from .. import metadata_corpus as corpus
from ..attack_models import imagenet_photos

#: One size for every photo: one compiled program serves them all.
SIZE = (96, 128)


def _photo(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb).resize(SIZE[::-1], Image.Resampling.BICUBIC)


def _protect(*args: str):
    # The exact channel, few steps, no JPEG rounds: what is tested here is what is written, and where.
    options = ["--model", "efficientnet-lite0", "--channel", "exact", "--steps", "3", "--jpeg-rounds", "0"]
    return CliRunner().invoke(app, ["protect", *options, *args])


@pytest.mark.slow
@pytest.mark.core
@pytest.mark.skipif(corpus.EXIFTOOL is None, reason="needs exiftool (apt-get install libimage-exiftool-perl; .ci/run installs it)")
def test_nothing_lost_nothing_leaked_in_the_terminal(tmp_path, lite0_store, monkeypatch):
    root, _ = lite0_store
    monkeypatch.setenv("PPJAX_HOME", str(root))
    bin_dir, gs_ran = tmp_path / "bin", tmp_path / "gs-ran"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f"#!/bin/sh\necho \"$@\" >> {gs_ran}\nexit 1\n")
    (bin_dir / "gs").chmod(0o755 | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    photos = tmp_path / "photos"
    photos.mkdir()
    real = [_photo(rgb) for _, rgb, _ in imagenet_photos(5)]
    real[0].save(photos / "a.png")
    real[1].save(photos / "a.bmp")
    real[2].save(photos / "b.jpg", quality=92)
    real[3].save(photos / "b.jpeg", quality=92)
    postscript = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    (photos / "poster.jpg").write_text(postscript)  # a PostScript file under a photo's name
    eps = tmp_path / "drawing.eps"
    eps.write_text(postscript)

    out = tmp_path / "out"
    report = tmp_path / "report.json"
    first = _protect("-o", str(out), "--json", str(report), str(photos), str(eps))
    assert first.exit_code == 1, first.output  # the two PostScript files failed, each said in one line
    assert not gs_ran.exists(), "Ghostscript ran"
    outputs = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert outputs == ["a (bmp).png", "a.png", "b (jpeg).jpg", "b.jpg"]
    data = json.loads(report.read_text())
    by_source = {Path(r["source"]).name: r for r in data["results"]}
    assert Path(by_source["a.bmp"]["output"]).name == "a (bmp).png" and by_source["a.bmp"]["renamed_from"] == "a.png"
    assert Path(by_source["b.jpeg"]["output"]).name == "b (jpeg).jpg" and by_source["b.jpeg"]["renamed_from"] == "b.jpg"
    assert by_source["a.png"]["renamed_from"] is None and data["renamed"] == 2
    assert "renamed: " in first.stderr and "a (bmp).png" in first.stderr
    for name in ("poster.jpg", "drawing.eps"):
        assert "not a photo ppjax reads (a PostScript file)" in by_source[name]["error"]
    # Each output is its own input's photo.
    for src, dst in (("a.png", "a.png"), ("a.bmp", "a (bmp).png"), ("b.jpg", "b.jpg"), ("b.jpeg", "b (jpeg).jpg")):
        change = np.abs(np.asarray(Image.open(out / dst).convert("RGB"), int) - np.asarray(Image.open(photos / src).convert("RGB"), int))
        assert change.mean() < 3, (src, dst)

    # A second run leaves all four as they are.
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if not p.name.startswith(".")}
    second = _protect("-o", str(out), str(photos))
    assert second.exit_code == 1, second.output
    assert "4 already done" in second.stdout
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if not p.name.startswith(".")} == kept
    assert not gs_ran.exists()

    # Keep camera details: the camera's make and nothing of the location, XMP, text or thumbnail.
    camera = tmp_path / "camera"
    camera.mkdir()
    corpus.jpeg(camera / "IMG_2040.jpg", rgb=np.asarray(real[4]))
    found = corpus.exiftool_tags(camera / "IMG_2040.jpg")
    assert {"GPS:GPSLatitude", "XMP-exif:GPSLatitude", "IFD0:ImageDescription", "File:Comment", "IFD1:ThumbnailImage"} <= set(found)
    kept_run = _protect("-o", str(tmp_path / "kept"), "--keep-metadata", str(camera))
    assert kept_run.exit_code == 0, kept_run.output
    tags = corpus.exiftool_tags(tmp_path / "kept" / "IMG_2040.jpg")
    assert tags["IFD0:Make"] == "Canon" and corpus.leaks(tags) == [], corpus.leaks(tags)
    bare_run = _protect("-o", str(tmp_path / "bare"), str(camera))
    assert bare_run.exit_code == 0, bare_run.output
    bare = corpus.exiftool_tags(tmp_path / "bare" / "IMG_2040.jpg")
    assert [k for k in bare if not k.startswith("JFIF:")] == [], sorted(bare)
