"""The root Typer app: global options and command registration. Errors are mapped in `cli/__init__.py`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl import __version__
from sandboxctl.cli import agent, cleanup, config_cmd, cp, create, delete, exec_, extend, render, shell, status
from sandboxctl.cli.examples import EXAMPLES, SectionedGroup, attach_examples
from sandboxctl.config import Settings, configure_logs
from sandboxctl.services.context import Context

app = typer.Typer(
    name="sandboxctl",
    help="Create, run commands in, and reliably clean up sandboxes for AI agents and CI.",
    epilog=EXAMPLES[""],
    cls=SectionedGroup,  # commands listed under headings, without rich (see cli/examples.py)
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: rich's help renderer alone costs ~90 ms of every `--help`.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        render.emit_line(f"sandboxctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    *,
    db: Annotated[
        str | None,
        typer.Option("--db", metavar="URL", help="Registry: a SQLite path or SQLAlchemy URL (env: SANDBOXCTL_DB)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (env: SANDBOXCTL_DEBUG=1).")] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            metavar="text|json",
            help="json: one JSON object per lifecycle event on stderr (env: SANDBOXCTL_LOG_FORMAT).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Build the one Context every command receives."""
    settings = Settings.load(db)
    configure_logs(settings, log_format)
    ctx.obj = Context(settings=settings)


app.command("create")(create.create_cmd)
# Options go before `--`; everything after it is the command, untouched.
app.command("exec")(exec_.exec_cmd)
app.command("shell", epilog=shell.EXAMPLES)(shell.shell_cmd)
app.command("cp")(cp.cp_cmd)
app.command("status")(status.status_cmd)
app.command("delete")(delete.delete_cmd)
app.command("extend")(extend.extend_cmd)
app.command("cleanup")(cleanup.cleanup_cmd)
app.command("agent-run")(agent.agent_run_cmd)
app.add_typer(agent.app, name="agent")
app.add_typer(config_cmd.app, name="config")
attach_examples(app)  # every command's --help ends with examples (cli/examples.py)
