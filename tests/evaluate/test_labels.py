"""Label lists: the real task files with their BOM, CRLF and quotes, and the other formats."""

from __future__ import annotations

import pytest

from ppjax.evaluate.labels import LabelsError, image_key, read_labels

from ..conftest import shared_path


def test_mediaeval_and_devkit_files():
    val = read_labels(shared_path("mediaeval", "MEPP18val.csv"))  # quoted, CRLF
    assert len(val) == 3000 and val["Places365_val_00000013"] == 49
    manual = read_labels(shared_path("mediaeval", "MEPP19test_manual.csv"))
    assert len(manual) == 60 and manual["Places365_val_00015483"] == 230
    devkit = read_labels(shared_path("places365", "places365_val.txt"))
    assert len(devkit) == 36500 and devkit["Places365_val_00000001"] == 165
    assert all(devkit[k] == v for k, v in manual.items())
    samples = read_labels(shared_path("places365_val_samples", "labels.csv"))  # header file,label,category
    assert samples["Places365_val_00001219"] == 95


def test_imagenet_true_label_is_one_based():
    labels = read_labels(shared_path("imagenet_compatible", "images.csv"))
    assert len(labels) == 300 and labels["001b5e6f1b89fd3b"] == 576  # TrueLabel 577: gondola


def test_file_lists_without_labels_are_refused():
    with pytest.raises(LabelsError, match="no label"):
        read_labels(shared_path("mediaeval", "MEPP19test.csv"))
    with pytest.raises(LabelsError, match="no label"):
        read_labels(shared_path("mediaeval", "MEPP18test.csv"))


def test_bom_crlf_and_bad_values(tmp_path):
    f = tmp_path / "l.csv"
    f.write_bytes("\ufefffile,label\r\n\"a.jpg\",\"3\"\r\nb.png,7\r\n".encode())
    assert read_labels(f) == {"a": 3, "b": 7}
    f.write_text("a.jpg,bedroom\nb.jpg,kitchen\n")
    with pytest.raises(LabelsError, match="line 2: label 'kitchen' is not a class index"):
        read_labels(f)
    f.write_text("a.jpg,bedroom\n")  # a lone row that reads as a header: nothing usable
    with pytest.raises(LabelsError, match="no labels found"):
        read_labels(f)
    f.write_text("")
    with pytest.raises(LabelsError, match="empty"):
        read_labels(f)


def test_image_key():
    assert image_key("runA_Places365_val_00000042.png") == "Places365_val_00000042"
    assert image_key("/x/Places365_val_00000042.jpg") == "Places365_val_00000042"
    assert image_key("holiday/beach.JPG") == "beach"
