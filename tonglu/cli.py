"""The `tonglu` command line. Each area registers its commands from `tonglu/commands/<area>.py`.

Command modules keep heavy imports (aiortc, faster_whisper, ...) inside the command functions so
that `tonglu --help` and `tonglu verify` start fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="tonglu",
    help="同录 Tonglu — evidence-grade recording for interview rooms and remote hearings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: each prints one JSON object with its figures and a same-run baseline.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Area modules; each defines `register(app, bench_app)`.
COMMAND_MODULES = (
    "tonglu.commands.system",
    "tonglu.commands.store",
    "tonglu.commands.verify",
    "tonglu.commands.recorder",
    "tonglu.commands.integrity",
    "tonglu.commands.transcribe",
    "tonglu.commands.web",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:
            raise
        continue
    _module.register(app, bench_app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
