"""Protect image files: plan, decode, batch by shared program, protect, write, judge.

Photos are grouped by the program that serves them (under the social channel the canvas their
working copy goes on, :meth:`ppjax.protect.Protector.canvas_for`; under the exact channel their
size), in input order, read from their headers before anything is decoded. Each batch is decoded
when its turn comes, so only the photos in flight are in memory, and protected, written and judged
by :class:`ppjax.protect.batch.Batch`; every photo is reported (``progress``) and its output moved
into place the moment it is final. Two batches per device are in flight, so that one's writing
and judging on the host overlaps the other's program.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from ppjax.io.images import ImageReadError, InputCheck, peek_size, read_image
from ppjax.protect.batch import DISK_FULL, DISK_FULL_REASON, VERDICT, Batch, ProtectResult
from ppjax.protect.config import PANEL_MARGIN
from ppjax.protect.devices import replicas
from ppjax.protect.manifest import Decision, Manifest, clean_leftovers, staging_path
from ppjax.protect.panel import PanelJudge
from ppjax.protect.protector import Protector
from ppjax.protect.timings import NO_CLOCK

__all__ = ["ProtectResult", "plan_work", "plan_batches", "protect_files"]

#: Batches in flight per device: one on the device while the other writes and judges on the host.
_IN_FLIGHT = 2


def protect_files(
    protector: Protector,
    jobs: Sequence[tuple[Path, Path]],
    *,
    seed: int = 0,
    max_batch: int = 1,
    jpeg_quality: int = 95,
    jpeg_rounds: int = 3,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    channel_rounds: int = 3,
    panel_margin: float = PANEL_MARGIN,
    manifest: Manifest | None = None,
    devices: Sequence | None = None,
    stage: Callable[[Path, str], None] | None = None,
    keep_metadata: bool = False,
    on_result: Callable[[ProtectResult], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    clock=NO_CLOCK,
    in_flight: int = _IN_FLIGHT,
) -> list[ProtectResult]:
    """Protect each (input, output) pair.

    Without a ``manifest`` an output that exists is kept unless ``overwrite``; with one, it is kept
    only when the manifest records it as made from this input with these settings, and each
    finished output is recorded there (see :mod:`ppjax.protect.manifest`). Outputs are made under
    a hidden staging name and renamed into place when final; what a killed run left is removed.

    Each image's key comes from ``seed`` and its input file's name, so its random draws do not
    depend on the batch it lands in nor on its folder; with ``max_batch`` 1 (the default) its
    bytes depend on nothing else either. (In a larger batch they can differ in rare pixels with the batch's other photos, which
    change the float order.) ``progress(n)`` hears the number of photos finished, after each one;
    ``stage(source, text)`` what each photo is doing ("compiling ... once", "protecting",
    "verifying", a later round).

    ``channel_rounds`` and ``panel_margin``: under the social channel, how many later rounds a
    photo may get, and the smallest lead over the real panel's variants (logits) that makes it
    final without one (:data:`ppjax.protect.config.PANEL_MARGIN`).

    ``keep_metadata``: write each photo's allowlisted camera details (see
    :mod:`ppjax.io.metadata`); by default no metadata. ``on_result(result)`` hears each photo's result
    as it is final; once ``cancelled()`` is true, photos not yet started are skipped and those in
    flight are not written (both "cancelled"). An interrupt (Ctrl+C: ``KeyboardInterrupt`` in the
    waiting thread) cancels the same way and is raised again once the photos in flight have
    stopped: what was final stays written and recorded, nothing else is left behind, and the same
    command resumes.

    ``devices``: the local devices to use (default: JAX's default device only). Batches are formed
    exactly as for one device and each runs whole on one device, so that the bytes do not depend on
    how many devices there are (see :func:`ppjax.protect.devices.replicas`).

    ``clock``: a :class:`ppjax.protect.timings.StageClock` that hears each stage's seconds;
    ``in_flight``: batches in flight per device (1: one stage at a time, to attribute time).
    """
    inputs = InputCheck([src for src, _ in jobs])
    pending, results = plan_work(jobs, manifest, overwrite, inputs)
    clean_leftovers(out for _, out in pending)
    interrupted = threading.Event()
    halted: list[str] = []  # why the run stopped by itself (a full disk)

    def halt(reason: str) -> None:
        if not halted:
            halted.append(reason)

    def called_off() -> bool:
        return interrupted.is_set() or (cancelled is not None and cancelled())

    def stopped() -> str | None:
        """Why the run stopped, or None while it goes on."""
        if halted:
            return halted[0]
        return "cancelled" if called_off() else None

    if manifest and pending:
        manifest.start()
    lock = threading.Lock()
    decoded: dict[Path, str | None] = {}  # each input's bytes as decoded: what its output is made from
    if progress:
        progress(len(results))

    def finish(result: ProtectResult) -> None:
        # A photo written whole when the run stopped by itself (a full disk) is still kept; one
        # cancelled while it was computed is not (the person asked to stop).
        if result.output is not None and called_off():
            staging_path(result.output).unlink(missing_ok=True)  # cancelled while it was computed: never written
            result = ProtectResult(result.source, None, skipped="cancelled")
        if result.output is not None:
            staged = staging_path(result.output)
            try:
                with clock("manifest and rename"):
                    if manifest is not None:
                        manifest.commit(result.source, staged, result.output, {k: getattr(result, k) for k in VERDICT}, decoded.get(result.source))
                    else:
                        os.replace(staged, result.output)
            except OSError as e:  # the manifest's disk is full, say: never a result left unsaid
                staged.unlink(missing_ok=True)
                if e.errno in DISK_FULL:
                    halt(f"{DISK_FULL_REASON} {result.output.parent} is full")
                where = "the manifest could not record it" if result.output.exists() else "it could not be put in place"
                result = ProtectResult(result.source, None, error=f"{result.output}: written, but {where} ({e.strerror or e}); the next run makes it again")
        with lock:
            results.append(result)
            done = len(results)
        if on_result:
            on_result(result)
        if progress:
            progress(done)

    protectors = [protector] if not devices or len(devices) < 2 else replicas(protector, devices)
    report = stage or (lambda source, text: None)
    with ThreadPoolExecutor(thread_name_prefix="ppjax-channel") as pool:
        workers: queue.SimpleQueue = queue.SimpleQueue()
        for p in protectors:
            for _ in range(in_flight):
                workers.put(Batch(p, finish, inputs, seed, max_batch, jpeg_quality, jpeg_rounds, channel_rounds, PanelJudge(p, pool, clock), report, keep_metadata, clock, panel_margin, stopped, halt))

        def run(batch_jobs) -> None:
            if reason := stopped():
                for src, out in batch_jobs:
                    finish(ProtectResult(src, None, skipped=reason))
                return
            worker = workers.get()
            try:
                loaded, ok_jobs = [], []
                for job in batch_jobs:
                    try:
                        with clock("decode"):
                            loaded.append(read_image(job[0]))
                        decoded[job[0]] = loaded[-1].sha256
                        ok_jobs.append(job)
                    except ImageReadError as e:
                        finish(ProtectResult(job[0], None, error=str(e)))
                if ok_jobs:
                    worker.run(ok_jobs, loaded)
            finally:
                workers.put(worker)

        with ThreadPoolExecutor(len(protectors) * in_flight, thread_name_prefix="ppjax-batch") as runners:
            futures = [runners.submit(run, b) for b in plan_batches(protector, pending, max_batch)]
            try:
                for f in futures:
                    f.result()
            except KeyboardInterrupt:
                # Leaving the pool waits for every batch submitted: without this each would still
                # be attacked and written, the whole album after a Ctrl+C.
                interrupted.set()
                raise
    order = {src: n for n, (src, _) in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.source])


def plan_work(jobs: Sequence[tuple[Path, Path]], manifest: Manifest | None, overwrite: bool, is_input=None) -> tuple[list, list[ProtectResult]]:
    """(the jobs to do, a result for each job not done): a job whose output would be one of the
    inputs (the same path, or the same file under another name) fails at once, ``overwrite`` or
    not, before any attack is spent on it; the others by ``manifest`` (read afresh) when given,
    else any existing output is skipped unless ``overwrite``. ``is_input``: the jobs' input check,
    when the caller keeps one (None: made here)."""
    results: list[ProtectResult] = []
    pending = []
    if manifest:
        manifest.refresh()
    is_input = InputCheck([src for src, _ in jobs]) if is_input is None else is_input
    for src, out in jobs:
        if is_input(out):
            results.append(ProtectResult(src, None, error=f"{out}: refusing to overwrite an input image"))
            continue
        if manifest:
            decision = manifest.decide(src, out, overwrite)
        else:
            decision = Decision(True) if overwrite or not out.exists() else Decision(False, "output exists (use --overwrite)")
        if decision.redo:
            pending.append((src, out))
        elif decision.record is not None:  # made by this same run (a retried batch): its verdict
            results.append(ProtectResult(src, out, **{k: decision.record.get(k) for k in VERDICT if k in decision.record}))
        else:
            results.append(ProtectResult(src, out, skipped=decision.reason))
    return pending, results


def plan_batches(protector: Protector, jobs: Sequence[tuple[Path, Path]], max_batch: int) -> list[list]:
    """``jobs`` in batches of at most ``max_batch`` that share a compiled program, by each input's
    size as its header gives it (files whose header cannot be read go alone: decoding says why),
    in input order within each group.

    The first batch of every program comes first, then the rest group by group: with two batches
    in flight, a second program's compile then overlaps the first's instead of waiting behind every
    photo of the first (XLA compiles without holding Python's lock)."""
    groups: dict = {}
    for job in jobs:
        groups.setdefault(_program_key(protector, peek_size(job[0])), []).append(job)
    firsts, rest = [], []
    for key, group in groups.items():
        step = 1 if key is None else max_batch
        batches = [group[i : i + step] for i in range(0, len(group), step)]
        firsts.append(batches[0])
        rest += batches[1:]
    return firsts + rest


def _program_key(protector: Protector, size: tuple[int, int] | None):
    """The canvas an (h, w) photo is protected on, which decides its program (None: unknown)."""
    if size is None:
        return None
    return protector.canvas_for(*size) if protector.channel == "exact" else protector.photo_canvas(*size)
