"""`ppjax evaluate`: judge protected images against their originals, on independent engines."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ppjax import store
from ppjax.cli.common import choices, err, fail, load_or_fetch, out
from ppjax.evaluate.engines import Engines
from ppjax.protect.config import Channel

#: The classifiers a run can be judged by: every registry entry of kind "classifier".
Classifier = choices("Classifier", store.classifier_names())


class Task(str, enum.Enum):
    MEDIAEVAL2019 = "mediaeval2019"


def evaluate(
    originals: Annotated[Path, typer.Argument(help="Folder of original images.", show_default=False)],
    protected: Annotated[Path, typer.Argument(help="Folder or zip of protected images (paired by name; extensions may differ).", show_default=False)],
    model: Annotated[Classifier, typer.Option(help="Classifier from the store.")] = Classifier("places365"),
    engine: Annotated[Engines, typer.Option(help="jax, onnx, or both. onnx: the independent engine, ONNX Runtime on the graph exported from the original framework (for mobilenet-v2: LiteRT on its own TFLite file).")] = Engines.BOTH,
    labels: Annotated[Optional[Path], typer.Option(help="True labels: MediaEval CSV, places365_val.txt, file,label CSV, or images.csv (TrueLabel). Default: the model's predictions on the originals.")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(min=1, max=100, help="Re-encode protected images as JPEG at this quality first (the 2020 task used 90).")] = None,
    channel: Annotated[Channel, typer.Option(help="exact: judge the protected pixels as they are (MediaEval 2019). social: also judge each pair through the real channel's panel, the variants `ppjax protect` verifies on (JPEG q90/q75 4:2:0, the Places365 demo's 256 + centre 224 and a direct resize to 224, bilinear and bicubic; platform shrinks for large photos).")] = Channel.EXACT,
    judge: Annotated[Optional[str], typer.Option(help="Held-out classifiers, comma-separated, that also judge the protected images (each in its independent engine: ONNX Runtime, or LiteRT for mobilenet-v2; each against its own top-1 on the original), in their own columns: models the protection was not made against. Refused for --model, and for any model the protected folder's manifest says was attacked.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report here as JSON, and a Markdown summary beside it (.md).")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write a page with originals, protected images, amplified differences and predictions side by side.")] = None,
    task: Annotated[Optional[Task], typer.Option(help="Check PROTECTED against a task's submission rules before scoring: mediaeval2019.")] = None,
    task_list: Annotated[Optional[Path], typer.Option(help="With --task: the task's test list (MEPP19test.csv).")] = None,
) -> None:
    """Measure protection (both engines), image quality and appeal of protected images against originals."""
    from ppjax import evaluate as ev
    from ppjax.evaluate.engines import EngineError, attacked_models, held_out_judges, make_engines, recorded_edits
    from ppjax.evaluate.labels import LabelsError, read_labels

    try:
        truth = read_labels(labels) if labels else None
    except LabelsError as e:
        raise fail(str(e), 2) from None
    if task is not None:
        _check_task(protected, task_list)
    store.use_jit_cache()  # the canvases' programs, compiled once, serve the next album too
    m = load_or_fetch(model.value)
    try:
        engines = make_engines(m, model.value, engine, store.model_dir(model.value), store.programs_folder())
        judge_names = [n.strip() for n in (judge or "").split(",") if n.strip()]
        unknown = [n for n in judge_names if n not in store.classifier_names()]
        if unknown:
            raise fail(f"--judge: unknown classifier {unknown[0]!r}; known: {', '.join(store.classifier_names())}", 2)
        judges = held_out_judges(judge_names, {model.value} | (attacked_models(protected) if protected.is_dir() else set()), load_or_fetch)
    except EngineError as e:
        raise fail(str(e), 2 if "held out" in str(e) else 1) from None
    nima = store.load_model("nima") if store.is_installed("nima") else None
    try:
        with ev.open_protected(protected) as protected_dir:
            pairs, only_orig, only_prot = ev.pair_images(originals, protected_dir)
            if not pairs:
                raise fail("no image in PROTECTED has a matching original (files are paired by name)", 2)
            made = recorded_edits(protected_dir)  # by output path, as the manifest records them
            edits = {p.key: made.get(p.protected.relative_to(protected_dir).as_posix()) for p in pairs}
            with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err) as bar:
                progress_task = bar.add_task("pairs", total=len(pairs))
                report = ev.evaluate(
                    m, pairs, engines=engines, labels=truth, jpeg_quality=jpeg_quality, nima=nima,
                    progress=lambda i: bar.update(progress_task, completed=i), channel=channel.value, judges=judges, edits=edits,
                )  # fmt: skip
            if html_out:  # while a zip's extracted images still exist
                from ppjax.evaluate.html import render_html

                html_out.parent.mkdir(parents=True, exist_ok=True)
                html_out.write_text(render_html(report, jpeg_roundtrip=ev.jpeg_roundtrip), encoding="utf-8")
                err.print(f"wrote {html_out}")
    except ev.PairingError as e:
        raise fail(str(e), 2) from None
    report = dataclasses.replace(report, unpaired={"originals": only_orig, "protected": only_prot})
    if only_prot:
        err.print(f"warning: {len(only_prot)} protected images have no original, e.g. {only_prot[0]}")
    summary = ev.markdown_summary(report)
    out.print(summary, markup=False)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        json_out.with_suffix(".md").write_text(summary)
        err.print(f"wrote {json_out} and {json_out.with_suffix('.md')}")
    if report.skipped:
        raise typer.Exit(1)


def _check_task(protected: Path, task_list: Path | None) -> None:
    """The MediaEval 2019 submission rules; a run that breaks them is not scored (exit 1)."""
    from ppjax.evaluate.mediaeval import check_run, read_test_list

    if task_list is None or not task_list.is_file():
        raise fail("--task mediaeval2019 needs --task-list MEPP19test.csv (the task's list of 600 test images)", 2)
    from ppjax.evaluate.labels import LabelsError

    try:
        violations = check_run(protected, read_test_list(task_list))
    except LabelsError as e:
        raise fail(str(e), 2) from None
    for v in violations:
        err.print(f"[red]violation:[/] {v}", markup=True)
    if violations:
        raise fail(f"the run breaks the MediaEval 2019 rules in {len(violations)} ways; not scored")
    err.print("the run follows the MediaEval 2019 submission rules")
