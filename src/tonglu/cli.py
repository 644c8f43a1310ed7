"""The `tonglu` command line. Each area registers its commands from `tonglu/commands/<area>.py`.

Command modules keep heavy imports (aiortc, faster_whisper, ...) inside the command functions so
that `tonglu --help` and `tonglu verify` start fast. Packages above the command line (the
benchmarks in `tonglu.bench`) attach their commands through the `tonglu.cli` entry-point group, so
this module never imports them.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from tonglu.commands import db, holds, integrity, recorder, store, system, transcribe, verify, web

app = typer.Typer(
    name="tonglu",
    help="同录 Tonglu — evidence-grade recording for interview rooms and remote hearings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in (system, store, db, verify, recorder, integrity, transcribe, web, holds):
    _module.register(app)

for _ep in entry_points(group="tonglu.cli"):
    _ep.load()(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
