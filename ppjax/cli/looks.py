"""`ppjax looks list|show|apply`: the named looks (fixed photo edits), and any look saved as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ppjax.cli.bench import table
from ppjax.cli.common import err, fail, load_or_fetch, out
from ppjax.edits.looks import resolve_look

app = typer.Typer(help="Named looks (fixed photo edits in the style of app filters) and looks saved as JSON.", no_args_is_help=True)


@app.command("list")
def list_looks() -> None:
    """The named looks and what each does."""
    from ppjax.edits import PARTS, EditPipeline
    from ppjax.edits.looks import LOOKS, look

    pipe = EditPipeline(tuple(PARTS))
    rows = [(n, about, pipe.describe(look(n))) for n, (about, _) in LOOKS.items()]
    out.print(table("looks", ("name", "what it does", "sliders"), rows), width=max(out.width, 160))


@app.command()
def show(look: Annotated[str, typer.Argument(help="A look's name or JSON file.")]) -> None:
    """A look's sliders in words."""
    from ppjax.edits import PARTS, EditPipeline

    try:
        params = resolve_look(look)
    except ValueError as e:
        raise fail(str(e), 2) from None
    out.print(EditPipeline(tuple(PARTS)).describe(params))


@app.command()
def apply(
    look: Annotated[str, typer.Argument(help="A look's name or JSON file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.", exists=True)],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Where the edited photos go (each input's relative path and name, as PNG; inputs that would share a name get their own, as ppjax protect names them).")],
) -> None:
    """Apply a look to photos as it is: no classifier, no verdict (the non-adversarial baseline)."""
    from ppjax.edits import PARTS, EditPipeline, apply_full
    from ppjax.io import iter_image_files
    from ppjax.cli.common import left_out_line
    from ppjax.io.images import ImageReadError, ImageWriteError, InputCheck, check_output_folder, read_image, write_image
    from ppjax.io.naming import plan_names

    try:
        params = resolve_look(look)
        check_output_folder(inputs, out_dir)
    except ValueError as e:
        raise fail(str(e), 2) from None
    pipe = EditPipeline(tuple(PARTS))
    left_out: list = []
    files, renamed = plan_names([(f, Path(rel).with_suffix(".png")) for f, rel in iter_image_files(inputs, skip=out_dir, left_out=left_out)])
    if left_out:
        err.print(left_out_line(left_out))
    is_input = InputCheck([path for path, _ in files])
    if not files:
        raise fail("no image files found in the given paths", 2)
    failed = 0
    for path, rel in files:
        dst = out_dir / rel
        if path in renamed:
            err.print(f"renamed: {path} is written as {dst.name} ({renamed[path].name} is another input's output)", markup=False)
        try:
            if is_input(dst):
                raise ImageWriteError(f"{dst}: refusing to overwrite an input image")
            image = read_image(path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_image(dst, apply_full(pipe, params, image.rgb), image.alpha)
        except (ImageReadError, ImageWriteError, OSError) as e:
            err.print(f"[red]error:[/] {path}: {e}", markup=True)
            failed += 1
    out.print(f"applied {look!r} to {len(files) - failed}/{len(files)} photos in {out_dir}")
    if failed:
        raise typer.Exit(1)


@app.command()
def fit(
    inputs: Annotated[list[Path], typer.Argument(help="Photos or folders the look is fitted on.", exists=True)],
    output: Annotated[Path, typer.Option("-o", "--output", help="The look's JSON file.")],
    model: Annotated[str, typer.Option(help="Classifier(s) to fit against, comma-separated (installed, or fetched on first use).")] = "places365",
    steps: Annotated[int, typer.Option(min=1, help="Adam steps, each on a minibatch of photos.")] = 200,
    batch: Annotated[int, typer.Option(min=1, help="Photos per step.")] = 8,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Adam's, in units of each slider's half range.")] = 0.05,
    max_delta_e: Annotated[float, typer.Option(min=0.0, help="The largest mean CIEDE2000 the look may cause (0: the sliders' ranges only).")] = 6.0,
    start: Annotated[Optional[str], typer.Option(help="A look (name or JSON file) to start from instead of no edit.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (minibatches, input diversity).")] = 0,
) -> None:
    """Fit one look over many photos, so that applying it alone protects new photos (a universal adversarial edit)."""
    import jax
    import numpy as np
    from PIL import Image

    from ppjax import attacks
    from ppjax.attacks.universal import fit_look
    from ppjax.edits import PARTS, EditPipeline
    from ppjax.edits.looks import save_look
    from ppjax.io import iter_image_files
    from ppjax.io.images import ImageReadError, read_image

    try:
        first = resolve_look(start) if start else None
        models = [load_or_fetch(name) for name in model.split(",")]
    except ValueError as e:
        raise fail(str(e), 2) from None
    side = next((m.spec.fixed_size[0] for m in models if m.spec.fixed_size), 224)
    photos = []
    for path, _ in iter_image_files(inputs):
        try:
            rgb = read_image(path).rgb
        except ImageReadError as e:
            err.print(f"skipped: {e}")
            continue
        photos.append(np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BICUBIC)))
    if not photos:
        raise fail("no readable photos in the given paths", 2)
    targets = [attacks.Target(m.apply, m.variables, attacks.cross_entropy(), "loss", m.spec.fixed_size) for m in models]
    pipe = EditPipeline(tuple(PARTS))
    log = lambda i, value, fooled: err.print(f"step {i}/{steps}: objective {value:.3f}, fooled in the batch {fooled:.0%}")  # noqa: E731
    params = fit_look(pipe, targets, np.stack(photos) / np.float32(255), key=jax.random.key(seed), steps=steps, batch=batch,
                      learning_rate=learning_rate, max_delta_e=max_delta_e or None, start=first, log=log)  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    save_look(output, params, about={"fitted_on": len(photos), "models": model.split(","), "steps": steps, "max_delta_e": max_delta_e})
    out.print(f"{output}: {pipe.describe(params)}")
