"""CachedProgram: batches in flight on several threads share one trace, one export and one compile
of a program."""

from __future__ import annotations

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.store import programs
from ppjax.store.programs import CachedProgram, ProgramCache


def test_threads_asking_at_once_export_and_compile_once(tmp_path, monkeypatch):
    written = []
    write = programs.write_atomically
    monkeypatch.setattr(programs, "write_atomically", lambda path, data: (written.append(path.name), write(path, data)))

    def fn(x):
        time.sleep(0.3)  # a slow trace, as the protection programs' are: the other threads arrive meanwhile
        return jnp.tanh(x) * 2.0

    program = CachedProgram(jax.jit(fn), {"program": "tanh"}, ProgramCache(tmp_path, identity="test"))
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    results = [None] * 4
    started = threading.Barrier(4)

    def call(k):
        started.wait()
        results[k] = np.asarray(program(x))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(written) == 1 and len(program._loaded) == 1  # one export, one jitted program: one compile
    for r in results:
        np.testing.assert_allclose(r, np.tanh(x) * 2.0, rtol=1e-6)
    np.asarray(program(np.zeros((2, 4), np.float32)))  # another shape: a program of its own
    assert len(written) == 2 and len(list(tmp_path.glob("tanh-*.jaxexport"))) == 2
