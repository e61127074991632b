"""The ``ppjax`` command line, one module per command: each parses its options into the library's
values and calls the library (no command does library work itself).

* :mod:`.models`: ``ppjax models list|fetch|import``, the model store;
* :mod:`.predict`: ``ppjax classify``, ``ppjax score``;
* :mod:`.protect`: ``ppjax protect``;
* :mod:`.app`: ``ppjax app``, the local web page;
* :mod:`.evaluate`: ``ppjax evaluate``;
* :mod:`.looks`: ``ppjax looks list|show|apply``, fixed photo edits;
* :mod:`.bench`: ``ppjax bench``, ``bench attack``, ``bench jpeg``;
* :mod:`.common`: consoles, one-line errors, progress bars, models fetched on first use.
"""

from __future__ import annotations

import sys

import typer

from ppjax.cli import app as app_command, bench, evaluate, looks, models, predict, protect
from ppjax.cli.common import err

app = typer.Typer(
    name="ppjax",
    help="Protect photos against automatic scene classifiers (MediaEval Pixel Privacy), in JAX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.command()(predict.classify)
app.command()(predict.score)
app.command()(protect.protect)
app.command("app")(app_command.app)
app.command()(evaluate.evaluate)
app.add_typer(bench.app, name="bench")
app.add_typer(looks.app, name="looks")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
