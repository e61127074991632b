"""The label, task-list and class-list parsers under mutation fuzzing, seeded with the shared task
lists and label files: malformed text gives the parser's own error, never another exception."""

from __future__ import annotations

import pytest

from ..fuzzing import run_target


@pytest.mark.parametrize("target", ["labels", "test-list", "categories"])
def test_fuzzed_text_gives_clean_errors(target):
    report = run_target(target, executions=1500, seed=2)
    assert not report.crashes, report.line() + "\n" + report.crashes[0][1]
