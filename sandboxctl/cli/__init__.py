"""The entry point, and the one place where errors become a message and an exit code.

Typer and the commands live in `cli/app.py` and are imported only when needed:
`exec`, `status` and `delete` in their plain forms are parsed by `exec_fast` and `fast`
without them.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from sandboxctl.cli import exec_fast
from sandboxctl.config import ENV_DEBUG
from sandboxctl.dburl import db_url_from, scrub
from sandboxctl.errors import SandboxctlError

if TYPE_CHECKING:
    from typer.exceptions import TyperException


def _debug_enabled(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(ENV_DEBUG, "") not in ("", "0")


def _fail(text: str, code: int) -> int:
    sys.stderr.write(f"error: {scrub(text, _db_url)}\n")
    return code


# The registry URL of this invocation: its password is scrubbed from every error line and traceback.
_db_url: str | None = None


def _print_traceback() -> None:
    import traceback

    sys.stderr.write(scrub(traceback.format_exc(), _db_url))


def _usage_message(exc: TyperException) -> str:
    text = " ".join(exc.format_message().split())
    context = getattr(exc, "ctx", None)
    command = context.command_path if context is not None else "sandboxctl"
    return f"{text} (see `{command} --help`)"


def _run_typer(args: list[str]) -> int:
    import typer
    from typer._click.exceptions import NoArgsIsHelpError
    from typer.exceptions import TyperException

    from sandboxctl.cli.app import app

    try:
        result = app(args=args, prog_name="sandboxctl", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail("aborted", 130)
    except NoArgsIsHelpError as exc:  # `sandboxctl` or `sandboxctl agent` alone: the help, as written
        sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
        return exc.exit_code
    except TyperException as exc:  # bad flags and values, as parsed by Typer
        return _fail(_usage_message(exc), exc.exit_code)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code; every error becomes one `error:` line here."""
    global _db_url
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_enabled(args)
    _db_url = db_url_from(args)
    try:
        exec_shortcut = exec_fast.parse_fast(args)
        if exec_shortcut is not None:
            return exec_shortcut.run()
        from sandboxctl.cli import fast  # here, not above: exec needs none of status/create/delete's modules

        shortcut = fast.parse_fast(args)
        if shortcut is not None:
            return shortcut.run()
        return _run_typer(args)
    except SandboxctlError as exc:
        if debug:
            _print_traceback()
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 141
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            _print_traceback()
        return _fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)


def main() -> None:
    code = run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    # Skip interpreter teardown: with heavy SDKs loaded it costs ~0.4 s and changes nothing.
    os._exit(code)
