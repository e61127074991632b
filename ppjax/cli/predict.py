"""`ppjax classify` and `ppjax score`: a model's view of image files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ppjax.models.nima import POLICIES
from ppjax.cli.common import choices, err, exit_if_failed, image_paths, load_or_fetch, out

_FILES_HELP = "Image files or folders (searched recursively)."


def classify(
    files: Annotated[list[Path], typer.Argument(help=_FILES_HELP, show_default=False)],
    model: Annotated[str, typer.Option(help="Model from the store.")] = "places365",
    top: Annotated[int, typer.Option(min=1, help="How many classes to show per image.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image per line.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
    size: Annotated[int, typer.Option(min=0, help="Resize so the shorter side has this many pixels; 0 keeps the image as it is (MediaEval protocol).")] = 0,
) -> None:
    """Classify images: top classes with probabilities; sensitive classes are marked."""
    from ppjax import store
    from ppjax.io import ImageReadError
    from ppjax.predict.classify import classify_files

    store.use_jit_cache()  # the canvases' programs, traced and compiled once, serve the next album too
    m = load_or_fetch(model)
    paths = image_paths(files)
    failed = 0
    for result in classify_files(m, paths, top_k=min(top, m.spec.num_classes), max_batch=batch_size, size=size, programs=store.programs_folder()):
        if isinstance(result, ImageReadError):
            failed += 1
            err.print(f"[red]error:[/] {result}", markup=True)
            continue
        if as_json:
            print(json.dumps(result.to_json()), flush=True)
            continue
        title = f"{result.file}" + ("  [bold red]sensitive scene[/]" if result.sensitive else "")
        table = Table(title=title, title_justify="left")
        for col, justify in (("rank", "right"), ("class", "left"), ("prob", "right")):
            table.add_column(col, justify=justify)
        if m.sensitive:
            table.add_column("sensitive", justify="center")
        for rank, t in enumerate(result.top, 1):
            mark = ["●" if t.index in m.sensitive else ""] if m.sensitive else []
            table.add_row(str(rank), t.label, f"{t.prob:.4f}", *mark)
        out.print(table)
    exit_if_failed(failed, len(paths))


#: How NIMA sees an image (:data:`ppjax.models.nima.POLICIES`).
Policy = choices("Policy", POLICIES)


def score(
    files: Annotated[list[Path], typer.Argument(help=_FILES_HELP, show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image per line.")] = False,
    policy: Annotated[Policy, typer.Option(help="Input policy: 'as-is' (the image at its own size, titu1994's default) or 'keras-224' (nearest-neighbour resize to 224x224 as Keras' load_img).")] = Policy("as-is"),
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
) -> None:
    """Aesthetic appeal with NIMA: mean score (1..10) and its standard deviation per image."""
    from ppjax.io import ImageReadError
    from ppjax.predict.score import score_files

    model = load_or_fetch("nima", policy=policy.value)
    paths = image_paths(files)
    table = Table(title=f"NIMA aesthetic score ({policy.value})", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("NIMA mean ± std", justify="right")
    failed = 0
    for result in score_files(model, paths, max_batch=batch_size):
        if isinstance(result, ImageReadError):
            failed += 1
            err.print(f"[red]error:[/] {result}", markup=True)
        elif as_json:
            print(json.dumps(result.to_json()), flush=True)
        else:
            table.add_row(str(result.file), f"{result.mean:.3f} ± {result.std:.3f}")
    if not as_json and table.row_count:
        out.print(table)
    exit_if_failed(failed, len(paths))
