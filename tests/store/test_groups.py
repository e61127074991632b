"""Named groups of models: what `ppjax models list` says of them, and how --model expands them."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ppjax.cli import app
from ppjax.protect.config import expand_models
from ppjax.store import MODEL_GROUPS, classifier_names


def test_groups_name_known_classifiers_and_expand_in_order():
    for group, members in MODEL_GROUPS.items():
        assert set(members) <= set(classifier_names()) and len(set(members)) == len(members) > 1
        assert expand_models([group]) == members
    assert expand_models(["efficientnet-lite0", "imagenet-family"]) == MODEL_GROUPS["imagenet-family"]  # each once


def test_models_list_shows_each_group_and_whether_it_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PPJAX_HOME", str(tmp_path))
    listed = CliRunner().invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in map(json.loads, listed.output.splitlines())}
    for group, members in MODEL_GROUPS.items():
        assert all(group in rows[m]["groups"] for m in members)
    assert rows["efficientnet-lite2"]["groups"] == [] and not rows["mobilenet-v2"]["installed"]
    text = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "200"}).output
    assert "group imagenet-family (--model imagenet-family, attacked together)" in text and "missing efficientnet-lite0" in text
