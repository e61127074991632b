"""Host work in futures: on a pool when there is one, else now; or in order on one thread of its own."""

from __future__ import annotations

import threading
from concurrent.futures import Executor, Future
from typing import Callable, Sequence

__all__ = ["run_on", "in_order"]


def run_on(pool: Executor | None, fn: Callable, *args) -> Future:
    """``fn(*args)`` on ``pool``, or run now when there is none (a finished future then)."""
    if pool is not None:
        return pool.submit(fn, *args)
    done: Future = Future()
    done.set_result(fn(*args))
    return done


def in_order(fn: Callable, items: Sequence, name: str = "ppjax-host") -> list[Future]:
    """``fn(item)`` for each of ``items``, one after another on a single thread started now: a
    future per item, the first finished first. A thread rather than a pool's task, since ``fn``
    may itself wait on a pool's tasks (a task that waits on its own pool can starve it)."""
    futures: list[Future] = [Future() for _ in items]

    def work() -> None:
        for item, done in zip(items, futures):
            try:
                done.set_result(fn(item))
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits for it
                done.set_exception(e)

    threading.Thread(target=work, name=name, daemon=True).start()
    return futures
