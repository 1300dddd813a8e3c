"""The root Typer app: global options, command registration, and the one error -> exit-code mapping."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from sandboxctl import __version__
from sandboxctl.cli import agent, cleanup, config_cmd, create, delete, exec_, status
from sandboxctl.config import ENV_DEBUG, Settings
from sandboxctl.errors import SandboxctlError
from sandboxctl.services.context import Context

app = typer.Typer(
    name="sandboxctl",
    help="Create, run commands in, and reliably clean up sandboxes for AI agents and CI.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: rich's help renderer alone costs ~90 ms of every `--help`.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"sandboxctl {__version__}\n")
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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Build the one Context every command receives."""
    ctx.obj = Context(settings=Settings.load(db))


app.command("create")(create.create_cmd)
# Options go before `--`; everything after it is the command, untouched.
app.command("exec")(exec_.exec_cmd)
app.command("status")(status.status_cmd)
app.command("delete")(delete.delete_cmd)
app.command("cleanup")(cleanup.cleanup_cmd)
app.command("agent-run")(agent.agent_run_cmd)
app.add_typer(agent.app, name="agent")
app.add_typer(config_cmd.app, name="config")


def _debug_enabled(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(ENV_DEBUG, "") not in ("", "0")


def _fail(text: str, code: int) -> int:
    sys.stderr.write(f"error: {text}\n")
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code; every error becomes one `error:` line here."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_enabled(args)
    try:
        result = app(args=args, prog_name="sandboxctl", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail("aborted", 130)
    except TyperException as exc:  # bad flags and values, as parsed by Typer
        return _fail(_usage_message(exc), exc.exit_code)
    except SandboxctlError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 141
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            import traceback

            traceback.print_exc()
        return _fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)


def _usage_message(exc: TyperException) -> str:
    text = " ".join(exc.format_message().split())
    context = getattr(exc, "ctx", None)
    command = context.command_path if context is not None else "sandboxctl"
    return f"{text} (see `{command} --help`)"


def main() -> None:
    code = run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    # Skip interpreter teardown: with heavy SDKs loaded it costs ~0.4 s and changes nothing.
    os._exit(code)
