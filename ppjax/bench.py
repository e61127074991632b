"""Throughput benchmark: the JAX port against a PyTorch eager loop, same weights, same run.

Each measurement is the median over ``repeats`` rounds; rounds alternate between JAX and PyTorch so
that both see the same machine load (on a shared 2-core machine the speed drifts by tens of
percent within minutes). Needs torch (the ``export`` extra); imported only by ``ppjax bench``.
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ppjax.checkpoint import fill_strict
from ppjax.export.torch_resnet import resnet50 as torch_resnet50
from ppjax.export.torch_to_flax import torch_to_flax
from ppjax.models import places365


def _timed_rounds(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, after one warm-up call each (compilation)."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _loss_grad_jax(apply, variables):
    def loss(x01, labels):
        logp = jax.nn.log_softmax(apply(variables, x01))
        return -jnp.take_along_axis(logp, labels[:, None], axis=1).sum()

    return jax.jit(jax.grad(loss))


def run_resnet_bench(batch_sizes, *, repeats: int = 5, image_size: int = 256, seed: int = 0, log=print) -> dict:
    """Images/s for forward and forward + input gradient (one attack step), JAX vs PyTorch."""
    torch.manual_seed(seed)
    tmodel = torch_resnet50(places365.SPEC.num_classes).eval()
    sd = {k: v.numpy() for k, v in tmodel.state_dict().items()}
    expected = places365.expected_shapes()
    variables = jax.tree_util.tree_map(jnp.asarray, fill_strict(expected, torch_to_flax(sd, expected, "bench"), "bench"))
    apply = places365.make_apply(places365.build())
    forward = jax.jit(apply)
    grad = _loss_grad_jax(apply, variables)
    mean = torch.tensor(places365.SPEC.mean).view(1, 3, 1, 1)
    std = torch.tensor(places365.SPEC.std).view(1, 3, 1, 1)
    rng = np.random.default_rng(seed)
    rows = []
    for b in batch_sizes:
        log(f"batch {b}: compiling and timing ...")
        x = rng.random((b, image_size, image_size, 3), dtype=np.float32)
        labels = rng.integers(0, places365.SPEC.num_classes, b)
        xj, yj = jnp.asarray(x), jnp.asarray(labels, jnp.int32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(labels)

        def torch_forward():
            with torch.no_grad():
                tmodel((xt - mean) / std)

        def torch_grad():
            xx = xt.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(tmodel((xx - mean) / std), yt, reduction="sum")
            torch.autograd.grad(loss, xx)

        t = _timed_rounds(
            {
                "jax_forward": lambda: forward(variables, xj).block_until_ready(),
                "torch_forward": torch_forward,
                "jax_grad": lambda: grad(xj, yj).block_until_ready(),
                "torch_grad": torch_grad,
            },
            repeats,
        )
        for task in ("forward", "grad"):
            jax_ips, torch_ips = b / t[f"jax_{task}"], b / t[f"torch_{task}"]
            name = "forward" if task == "forward" else "forward+input grad"
            rows.append({"batch": b, "task": name, "jax_ips": jax_ips, "torch_ips": torch_ips, "ratio": jax_ips / torch_ips})
    env = (
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    return {"image_size": image_size, "repeats": repeats, "rows": rows, "environment": env}
