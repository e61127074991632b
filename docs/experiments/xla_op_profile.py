"""Where an installed model's forward pass or input gradient spends its time on XLA:CPU, by fused op.

Usage (the store's model; ``XLA_FLAGS`` must ask XLA:CPU to report its ops to the profiler):

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true PPJAX_HOME=STORE \
        python docs/experiments/xla_op_profile.py efficientnet-lite0 grad 1 224

prints the milliseconds per call of each kind of fused op (XLA's fusion names without their
numbers: ``ynn_fusion`` is a YNNPACK call, the 1x1 convolutions; the others are XLA's own loops),
summed over the ops of that kind, over 5 timed calls after 3 warm-up calls, and the wall per call.
It found the depthwise convolutions' input gradient (``multiply_bitcast_fusion``) at 14.9 of 44 ms
of EfficientNet-Lite0's gradient at 224x224 (docs/scale.md, twenty-third session).
"""

from __future__ import annotations

import collections
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ppjax import store

CALLS = 5
#: Trace events that wrap the program or the runtime rather than being one of its ops.
WRAPPERS = ("ThunkExecutor", "$", "SlinkyThreadPool", "PjitFunction", "CommonPjRt", "PjRt", "end: ", "Handle ", "Parse", "Allocate", "PythonRef")


def main(model_name: str, kind: str, batch: int, size: int) -> None:
    model = store.load_model(model_name)
    if kind == "fwd":
        fn = jax.jit(lambda a: model.apply(model.variables, a))
    elif kind == "grad":
        fn = jax.jit(jax.grad(lambda a: jnp.sum(model.apply(model.variables, a)[:, 0])))
    else:
        raise SystemExit(f"kind is fwd or grad, got {kind!r}")
    x = jnp.asarray(np.random.default_rng(0).random((batch, size, size, 3), np.float32))
    for _ in range(3):
        fn(x).block_until_ready()
    with tempfile.TemporaryDirectory() as folder:
        jax.profiler.start_trace(folder, create_perfetto_trace=True)
        start = time.perf_counter()
        for _ in range(CALLS):
            fn(x).block_until_ready()
        wall = (time.perf_counter() - start) / CALLS
        jax.profiler.stop_trace()
        trace = next(Path(folder).rglob("*.trace.json.gz"))
        events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and "dur" in e and not name.startswith(WRAPPERS):
            op = re.sub(r"\.\d+$", "", name)
            total[op] += e["dur"]
            count[op] += 1
    print(f"{model_name} {kind} {batch}x{size}x{size}: {1000 * wall:.1f} ms a call; by op kind (ms a call, ops a call):")
    for op, us in total.most_common():
        if us / CALLS >= 10:
            print(f"  {us / CALLS / 1000:8.2f}  {count[op] // CALLS:4d}  {op}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
