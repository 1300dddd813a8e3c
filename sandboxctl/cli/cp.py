"""`sandboxctl cp SRC DEST`: files in and out of a sandbox (rules in services/copying.py)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import JsonOption


def cp_cmd(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SRC", help="A host path, `-` (tar on stdin) or SANDBOX:PATH.")],
    dest: Annotated[str, typer.Argument(metavar="DEST", help="A host path, `-` (tar on stdout) or SANDBOX:PATH.")],
    *,
    json_: JsonOption = False,
) -> None:
    """Copy files or directories between the host and a sandbox, as `docker cp` does.

    SANDBOX:PATH on exactly one side (SANDBOX: id, name or unique id prefix; a relative PATH
    starts at the sandbox's workspace; a host path with a colon is written ./a:b). Streamed,
    modes kept; what comes out never writes through a link or outside DEST (refused members are
    listed on stderr). A directory SRC ending in /. copies its content only.
    """
    from sandboxctl.services.copying import copy, parse_endpoint

    report = copy(
        ctx.obj, parse_endpoint(source), parse_endpoint(dest), stdin=sys.stdin.buffer, stdout=sys.stdout.buffer
    )
    for skipped in report.skipped:
        render.message(f"warning: not copied: {skipped.path} ({skipped.reason})")
    if json_ and dest != "-":
        render.emit_json(report.to_json())
