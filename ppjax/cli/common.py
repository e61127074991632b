"""What every command shares: the two consoles, one-line errors, progress bars, and models loaded
from the store (fetched on first use)."""

from __future__ import annotations

import contextlib
import enum
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ppjax import store

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def choices(name: str, values) -> type[enum.Enum]:
    """A str Enum of ``values`` (member ``EFFICIENTNET_LITE0`` for ``"efficientnet-lite0"``), so that
    Typer lists them in ``--help`` and refuses anything else, from the library's own names."""
    return enum.Enum(name, {v.upper().replace("-", "_"): v for v in values}, type=str)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit to raise (1: the work failed, 2: usage)."""
    err.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


class DownloadBars:
    """``progress(filename) -> callback`` for store.fetch, drawing one rich bar per file."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def __call__(self, filename: str):
        task = self.progress.add_task(filename, total=None)

        def update(done: int, total: int | None) -> None:
            self.progress.update(task, completed=done, total=total)

        return update


@contextlib.contextmanager
def installing():
    """Download bars on stderr while a model installs; the reader's notes on skipped checkpoint
    metadata printed after it, one ``note:`` line each."""
    from ppjax.store.torch_checkpoint import CheckpointNote

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointNote)
        try:
            bars = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=err
            )
            with bars:
                yield DownloadBars(bars)
        finally:
            notes = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, CheckpointNote))
            for note in notes:  # the ONNX export reads the checkpoint again: each note once
                err.print(f"note: {note}", markup=False)


def load_or_fetch(name: str, **options):
    """The installed model, fetching it first (conversion on first use) when it is missing."""
    try:
        if name in store.KNOWN_MODELS and not store.is_installed(name):
            err.print(f"model {name} is not installed yet: fetching the official files once ({store.store_root()})")
            with installing() as bars:
                store.fetch(name, progress=bars)
        return store.load_model(name, **options)
    except (store.ModelStoreError, ValueError) as e:
        raise fail(str(e)) from None


def image_paths(inputs: list[Path]) -> list[Path]:
    """Image files named or found under folders; a usage error (exit 2) when there are none."""
    from ppjax.io import iter_image_files

    paths = [f for f, _rel in iter_image_files(inputs)]
    if not paths:
        raise fail("no image files found in the given paths", 2)
    return paths


def exit_if_failed(failed: int, total: int) -> None:
    if failed:
        err.print(f"{failed} of {total} files could not be read or processed")
        raise typer.Exit(1)


def left_out_line(files, shown: int = 5) -> str:
    """One line naming the files of the input folders that are not protected (their suffix is not a
    photo format ppjax reads): a person must not learn it after sharing the folder."""
    from ppjax.io.images import PHOTO_FORMAT_NAMES

    n = len(files)
    names = ", ".join(escape(f.name) for f in files[:shown]) + (f" and {n - shown} more" if n > shown else "")
    return (
        f"left out {n} file{'s' if n != 1 else ''} that ppjax does not read, not protected and not copied: {names}. "
        f"It reads {PHOTO_FORMAT_NAMES} (a RAW .dng can be exported as one of them first)."
    )
