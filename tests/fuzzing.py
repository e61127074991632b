"""Mutation fuzzing of ppjax's parsers of untrusted files, seeded with real files.

Each target takes bytes and must either succeed or raise the parser's own clear error; any other
exception is a crash. Inputs are mutated from seeds (real files: official-layout checkpoints, the
shared task lists, a Keras-2 HDF5 file) by bit flips, interesting integers written over 1, 2, 4 or
8 bytes (sizes, strides, offsets, counts), chunk deletion, duplication and insertion, truncation,
and splicing two seeds. Random draws come from one seeded generator: a run is reproducible.

Longer runs than the test suite's fixed budget (see README, "Fuzzing"):

    python -m tests.fuzzing checkpoint --seconds 600
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 10**6, 10**12, 2**63 - 1, -1)


def mutate(data: bytes, rng: np.random.Generator, others: Sequence[bytes] = ()) -> bytes:
    """One to four random mutations of ``data``."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 7))
        n = len(b)
        if n == 0:
            b += bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8))
            continue
        at = int(rng.integers(0, n))
        if op == 0:  # flip a bit
            b[at] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:  # an interesting integer over 1, 2, 4 or 8 bytes, either byte order
            width = int(rng.choice([1, 2, 4, 8]))
            value = int(rng.choice(_INTERESTING)) & ((1 << (8 * width)) - 1)
            raw = value.to_bytes(width, "little" if rng.random() < 0.7 else "big")
            b[at : at + width] = raw
        elif op == 2:  # delete a chunk
            del b[at : at + int(rng.integers(1, 64))]
        elif op == 3:  # duplicate a chunk
            chunk = b[at : at + int(rng.integers(1, 64))]
            b[at:at] = chunk
        elif op == 4:  # insert random bytes
            b[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8))
        elif op == 5:  # truncate
            del b[at:]
        elif others:  # splice: this file's head, another's tail
            other = others[int(rng.integers(0, len(others)))]
            b = b[:at] + other[int(rng.integers(0, max(1, len(other)))) :]
    return bytes(b)


@dataclass
class FuzzReport:
    target: str
    executions: int = 0
    seconds: float = 0.0
    clean_errors: int = 0
    crashes: list[tuple[bytes, str]] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.target}: {self.executions} executions in {self.seconds:.1f} s, {self.clean_errors} clean errors, "
            f"{len(self.crashes)} crashes"
        )


def fuzz(name: str, target: Callable[[bytes], object], allowed: tuple[type[BaseException], ...], seeds: Sequence[bytes],
         *, executions: int | None = None, seconds: float | None = None, seed: int = 0) -> FuzzReport:  # fmt: skip
    """Run ``target`` on the seeds and on mutations of them until ``executions`` or ``seconds`` run
    out; exceptions of the ``allowed`` types are clean errors, any other is a crash (kept with its
    input and traceback)."""
    rng = np.random.default_rng(seed)
    report = FuzzReport(name)
    start = time.perf_counter()
    queue = list(seeds)
    while True:
        elapsed = time.perf_counter() - start
        if (executions is not None and report.executions >= executions) or (seconds is not None and elapsed >= seconds):
            break
        if report.executions < len(seeds):
            data = seeds[report.executions]
        else:
            data = mutate(queue[int(rng.integers(0, len(queue)))], rng, seeds)
        report.executions += 1
        try:
            target(data)
        except allowed:
            report.clean_errors += 1
        except Exception:  # noqa: BLE001 - that is what a fuzzer looks for
            report.crashes.append((data, traceback.format_exc(limit=6)))
        else:
            if len(queue) < 64 and rng.random() < 0.05:
                queue.append(data)  # inputs that parse keep the mutations near the valid format
    report.seconds = time.perf_counter() - start
    return report


# Targets: bytes in; the parser's own errors are allowed.


def _via_file(folder: Path, suffix: str, parse: Callable[[Path], object]) -> Callable[[bytes], object]:
    def run(data: bytes):
        path = folder / f"input{suffix}"
        path.write_bytes(data)
        return parse(path)

    return run


def checkpoint_target(folder: Path):
    from ppjax.store.torch_checkpoint import CheckpointError, load_torch_checkpoint

    def parse(path):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_torch_checkpoint(path)

    return _via_file(folder, ".pth.tar", parse), (CheckpointError,)


def keras_target(folder: Path):
    from ppjax.export.keras_to_flax import read_keras2_weights
    from ppjax.store.torch_checkpoint import CheckpointError

    # The reader runs HDF5 in a child process; a short timeout keeps a hanging input cheap here.
    return _via_file(folder, ".h5", lambda path: read_keras2_weights(path, timeout=10.0, memory_bytes=1 << 30)), (CheckpointError,)


def labels_target(folder: Path):
    from ppjax.evaluate.labels import LabelsError, read_labels

    return _via_file(folder, ".csv", read_labels), (LabelsError,)


def test_list_target(folder: Path):
    from ppjax.evaluate.labels import LabelsError
    from ppjax.evaluate.mediaeval import read_test_list

    return _via_file(folder, ".csv", read_test_list), (LabelsError,)


def categories_target(folder: Path):
    from ppjax.models.places365 import CategoriesError, parse_categories

    return (lambda data: parse_categories(data.decode("utf-8", errors="replace"))), (CategoriesError,)


def small_official_checkpoint(tmp: Path, form: str = "legacy") -> bytes:
    """A checkpoint in the official Places365 layout with small tensors: ``legacy`` or ``zip``
    (written by PyTorch) or ``2017`` (Python 2 / CUDA era, opcode by opcode)."""
    rng = np.random.default_rng(0)
    sd = {
        "module.conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "module.bn1.running_mean": rng.standard_normal(4).astype(np.float32),
        "module.bn1.num_batches_tracked": np.array(3, np.int64),
        "module.fc.weight": rng.standard_normal((5, 4)).astype(np.float32).T,
        "module.fc.bias": rng.standard_normal(5).astype(np.float32),
    }
    path = tmp / f"seed-{form}.pth.tar"
    if form == "2017":
        from tests.py2_checkpoint import write_2017_checkpoint

        write_2017_checkpoint(path, sd)
    else:
        import torch

        state = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}
        torch.save({"epoch": 90, "arch": "resnet50", "state_dict": state, "best_prec1": 54.65}, path,
                   _use_new_zipfile_serialization=form == "zip")  # fmt: skip
    return path.read_bytes()


def keras_seed(tmp: Path) -> bytes:
    """A small Keras-2 weights file written with h5py in the layout Keras 2 wrote."""
    import h5py

    path = tmp / "seed.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"conv1", b"dense_1"]
        for layer, shapes in (("conv1", {"kernel": (3, 3, 3, 4)}), ("dense_1", {"kernel": (4, 10), "bias": (10,)})):
            lg = g.create_group(layer)
            lg.attrs["weight_names"] = [f"{layer}/{w}:0".encode() for w in shapes]
            for w, shape in shapes.items():
                lg.create_dataset(f"{layer}/{w}:0", data=np.ones(shape, np.float32))
    return path.read_bytes()


def _shared_texts() -> list[bytes]:
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    found = sorted(data.glob("mediaeval/*.csv"))[:3] + sorted(data.glob("places365/*.txt"))[:2]
    found += sorted(data.glob("places365_val_samples/*.csv"))[:1] + sorted(data.glob("imagenet_compatible/*.csv"))[:1]
    return [p.read_bytes()[:20000] for p in found]


TARGETS = {
    "checkpoint": (checkpoint_target, lambda tmp: [small_official_checkpoint(tmp, f) for f in ("legacy", "zip", "2017")]),
    "keras": (keras_target, lambda tmp: [keras_seed(tmp)]),
    "labels": (labels_target, lambda tmp: _shared_texts() or [b"file,label\na.jpg,3\n"]),
    "test-list": (test_list_target, lambda tmp: _shared_texts() or [b"file\nPlaces365_val_00000001.jpg\n"]),
    "categories": (categories_target, lambda tmp: [p for p in _shared_texts() if b"/a/" in p] or [b"/a/airfield 0\n"]),
}


def run_target(name: str, *, executions: int | None = None, seconds: float | None = None, seed: int = 0) -> FuzzReport:
    make, seeds = TARGETS[name]
    with tempfile.TemporaryDirectory(prefix="ppjax-fuzz-") as tmp:
        target, allowed = make(Path(tmp))
        corpus = seeds(Path(tmp))
        return fuzz(name, target, allowed, corpus, executions=executions, seconds=seconds, seed=seed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Mutation-fuzz ppjax's file parsers (python -m tests.fuzzing).")
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crashes", type=Path, help="write each crashing input here")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    crashed = 0
    for name in args.targets or list(TARGETS):
        report = run_target(name, seconds=args.seconds, seed=args.seed)
        print(report.line(), flush=True)
        for n, (data, tb) in enumerate(report.crashes):
            crashed += 1
            print(tb, file=sys.stderr)
            if args.crashes:
                args.crashes.mkdir(parents=True, exist_ok=True)
                (args.crashes / f"{name}-{n}.bin").write_bytes(data)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
