"""MediaEval 2019 submission rules on runs built in the test, and the real 600-image test list."""

from __future__ import annotations

import zipfile

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from ppjax.cli import app
from ppjax.evaluate.mediaeval import check_run, read_test_list

from ..conftest import shared_path


def _jpg(size=(256, 256)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_real_test_list_has_600_images():
    names = read_test_list(shared_path("mediaeval", "MEPP19test.csv"))
    assert len(names) == 600 and len(set(names)) == 600 and names[0] == "Places365_val_00015483"


def test_each_rule_is_reported(tmp_path):
    listed = [f"Places365_val_{i:08d}" for i in (1, 2, 3, 4)]
    run = tmp_path / "run.zip"
    with zipfile.ZipFile(run, "w") as zf:
        zf.writestr("teamA_Places365_val_00000001.jpg", _jpg())
        zf.writestr("teamA_Places365_val_00000002.jpg", _jpg((300, 256)))
        zf.writestr("teamA_Places365_val_00000003.jpg", b"broken")
        zf.writestr("teamB_Places365_val_00000099.jpg", _jpg())
        zf.writestr("notes.txt", "hello")
    v = check_run(run, listed)
    assert any("00000002.jpg: 300x256 pixels" in line for line in v)
    assert any("00000003.jpg: unreadable" in line for line in v)
    assert any("Places365_val_00000099 is not in the test list (extra)" in line for line in v)
    assert any("notes.txt: not named" in line for line in v)
    assert any("more than one run code: teamA, teamB" in line for line in v)
    assert any("1 of the 4 test images are missing: Places365_val_00000004" in line for line in v)
    assert len(v) == 6


def test_valid_run_passes_and_cli_refuses_invalid(tmp_path):
    listed = [f"Places365_val_{i:08d}" for i in (1, 2)]
    lst = tmp_path / "list.csv"
    lst.write_text("\n".join(f"{n}.jpg" for n in listed) + "\n")
    folder = tmp_path / "run"
    folder.mkdir()
    for n in listed:
        (folder / f"ppjax-1_{n}.jpg").write_bytes(_jpg())
    assert check_run(folder, read_test_list(lst)) == []
    (folder / f"ppjax-1_{listed[0]}.jpg").write_bytes(_jpg((128, 128)))
    orig = tmp_path / "orig"
    orig.mkdir()
    result = CliRunner().invoke(app, ["evaluate", "--task", "mediaeval2019", "--task-list", str(lst), str(orig), str(folder)])
    assert result.exit_code == 1 and "128x128 pixels" in result.stderr and "not scored" in result.stderr
    result = CliRunner().invoke(app, ["evaluate", "--task", "mediaeval2019", str(orig), str(folder)])
    assert result.exit_code == 2 and "--task-list" in result.stderr
