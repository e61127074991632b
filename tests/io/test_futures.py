"""Host work in futures: one thread in order, or a pool, or now."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ppjax.io.futures import in_order, run_on


def test_in_order_runs_every_item_on_one_thread_and_keeps_errors_per_item():
    seen = []

    def work(item):
        seen.append((item, threading.current_thread().name))
        if item == 2:
            raise ValueError("two")
        return item * 10

    futures = in_order(work, [1, 2, 3], name="ppjax-test")
    assert futures[0].result(timeout=10) == 10
    with pytest.raises(ValueError, match="two"):
        futures[1].result(timeout=10)
    assert futures[2].result(timeout=10) == 30  # an error does not stop the items after it
    assert [item for item, _ in seen] == [1, 2, 3]
    assert {name for _, name in seen} == {"ppjax-test"}


def test_run_on_a_pool_or_now():
    now = run_on(None, pow, 2, 5)
    assert now.done() and now.result() == 32
    with ThreadPoolExecutor(1, thread_name_prefix="ppjax-pool") as pool:
        assert run_on(pool, lambda: threading.current_thread().name).result().startswith("ppjax-pool")
