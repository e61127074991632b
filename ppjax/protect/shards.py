"""Splitting one job list over the N copies of a scheduler's array job, with no cluster code.

Each input goes to shard ``sha256(its output's path relative to the output folder) mod N``: the
same split in every copy, whatever order the files are listed in or which machine lists them, so
N copies with indices 0..N-1 together cover every input exactly once.

Where ``--num-shards``/``--shard-index`` are not given, they are read from the environment, first
found wins:

- ``PPJAX_NUM_SHARDS`` and ``PPJAX_SHARD_INDEX`` (any scheduler: set them yourself);
- Slurm job arrays: ``SLURM_ARRAY_TASK_COUNT`` and ``SLURM_ARRAY_TASK_ID`` (counted from
  ``SLURM_ARRAY_TASK_MIN`` in steps of ``SLURM_ARRAY_TASK_STEP``, so ``--array=1-8`` works);
- Kubernetes Indexed Jobs: ``JOB_COMPLETION_INDEX``, with the count from ``PPJAX_NUM_SHARDS`` or
  ``--num-shards`` (Kubernetes does not put ``completions`` in the environment).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["shard_of", "resolve_shard", "select_shard"]


def shard_of(relative_path: str, num_shards: int) -> int:
    """The shard (0..num_shards-1) of a relative path, stable across processes and machines."""
    digest = hashlib.sha256(Path(relative_path).as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def _int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not a whole number") from None


def _from_environment(env: Mapping[str, str]) -> tuple[int | None, int | None, str]:
    """(count, index, names) as the environment gives them; PPJAX_* first, each on its own."""
    count, index, names = _int(env, "PPJAX_NUM_SHARDS"), _int(env, "PPJAX_SHARD_INDEX"), []
    if count is not None or index is not None:
        names.append("PPJAX_*")
    if "SLURM_ARRAY_TASK_ID" in env:
        if index is None:
            task, low, step = _int(env, "SLURM_ARRAY_TASK_ID"), _int(env, "SLURM_ARRAY_TASK_MIN") or 0, _int(env, "SLURM_ARRAY_TASK_STEP") or 1
            index = (task - low) // step
        count = _int(env, "SLURM_ARRAY_TASK_COUNT") if count is None else count
        names.append("Slurm's SLURM_ARRAY_TASK_*")
    elif "JOB_COMPLETION_INDEX" in env and index is None:
        index = _int(env, "JOB_COMPLETION_INDEX")
        names.append("Kubernetes' JOB_COMPLETION_INDEX")
    return count, index, " and ".join(names) or "none"


def resolve_shard(
    num_shards: int | None = None, shard_index: int | None = None, environ: Mapping[str, str] | None = None
) -> tuple[int, int, str]:
    """``(num_shards, shard_index, where from)``: the flags; what they leave out, from the
    scheduler's environment (see the module); ``(1, 0, "none")`` when neither says anything.
    Raises ``ValueError`` for an incomplete or impossible pair."""
    source = "flags"
    if num_shards is None or shard_index is None:
        env_count, env_index, found = _from_environment(os.environ if environ is None else environ)
        if num_shards is None and shard_index is None and found == "none":
            return 1, 0, "none"
        source = found if num_shards is None and shard_index is None else f"flags and {found}"
        num_shards = env_count if num_shards is None else num_shards
        shard_index = env_index if shard_index is None else shard_index
    if num_shards is None or shard_index is None:
        missing = "--num-shards (or PPJAX_NUM_SHARDS)" if num_shards is None else "--shard-index (or a scheduler's array index)"
        raise ValueError(f"shards from {source}: {missing} is needed too")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard index {shard_index} is not in 0..{num_shards - 1} (from {source})")
    return num_shards, shard_index, source


def select_shard(jobs: Sequence[tuple[Path, Path]], out_dir: Path, num_shards: int, shard_index: int) -> list:
    """The (input, output) jobs of shard ``shard_index`` of ``num_shards``, in their order."""
    if num_shards == 1:
        return list(jobs)
    base = Path(out_dir)
    return [(src, out) for src, out in jobs if shard_of(Path(out).relative_to(base).as_posix(), num_shards) == shard_index]
