"""The root Typer app: global options and command registration. Errors are mapped in `cli/__init__.py`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl import __version__
from sandboxctl.cli import render
from sandboxctl.cli.examples import EXAMPLES, SectionedGroup
from sandboxctl.cli.lazy import LazyCommand
from sandboxctl.config import Settings, configure_logs
from sandboxctl.services.context import Context

# Registration order is the listing order (within --help's sections) and completion's order. Each summary is
# the first paragraph of the command's help: tests/test_help.py fails when one differs.
COMMANDS: dict[str, LazyCommand] = {
    "create": LazyCommand(
        "sandboxctl.cli.create", "create_cmd", "Create a sandbox and print its id (or its record with --json)."
    ),
    # Options go before `--`; everything after it is the command, untouched.
    "exec": LazyCommand(
        "sandboxctl.cli.exec_",
        "exec_cmd",
        "Run a command in a sandbox: output streamed live, stdin forwarded, its exit code returned.",
    ),
    "shell": LazyCommand(
        "sandboxctl.cli.shell",
        "shell_cmd",
        "Open an interactive shell in a sandbox: its $SHELL, else bash, else sh, on a real terminal.",
        epilog="EXAMPLES",
    ),
    "cp": LazyCommand(
        "sandboxctl.cli.cp",
        "cp_cmd",
        "Copy files or directories between the host and a sandbox, as `docker cp` does.",
    ),
    "status": LazyCommand(
        "sandboxctl.cli.status",
        "status_cmd",
        "One sandbox with its live backend state, or a list of live sandboxes, newest first.",
    ),
    "delete": LazyCommand(
        "sandboxctl.cli.delete",
        "delete_cmd",
        "Delete sandboxes now. Idempotent: what is already gone counts as deleted.",
    ),
    "extend": LazyCommand(
        "sandboxctl.cli.extend",
        "extend_cmd",
        "Give a sandbox more (or less) time; prints its new expiry (or its record with --json).",
    ),
    "cleanup": LazyCommand(
        "sandboxctl.cli.cleanup",
        "cleanup_cmd",
        "Delete expired, idle and orphaned sandboxes. Exit 1 if a deletion failed, 75 if another cleanup runs.",
    ),
    "agent-run": LazyCommand(
        "sandboxctl.cli.agent",
        "agent_run_cmd",
        "Run an agent on a copy of a repository in a fresh sandbox; collect its patch; finalize the sandbox.",
    ),
    "agent": LazyCommand("sandboxctl.cli.agent", "app", "Talk to and inspect agent runs."),
    "config": LazyCommand("sandboxctl.cli.config_cmd", "app", "Show or change settings (config.toml)."),
}


class RootGroup(SectionedGroup):
    """`sandboxctl`: COMMANDS, listed under headings, each imported when first looked up."""

    lazy = COMMANDS


app = typer.Typer(
    name="sandboxctl",
    help="Create, run commands in, and reliably clean up sandboxes for AI agents and CI.",
    epilog=EXAMPLES[""],
    cls=RootGroup,  # commands listed under headings, without rich (see cli/examples.py), built lazily
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
