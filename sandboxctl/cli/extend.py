"""`sandboxctl extend SANDBOX`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import JsonOption
from sandboxctl.durations import parse_duration
from sandboxctl.registry.states import Policy
from sandboxctl.services.context import Context


def extend_cmd(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(help="Id, name or unique id prefix.")],
    *,
    ttl: Annotated[
        str | None, typer.Option("--ttl", metavar="DUR", help="New lifetime counted from now (overrides the policy's).")
    ] = None,
    policy: Annotated[
        Policy | None,
        typer.Option("--policy", help="default (24h from now), extended (7d from now) or permanent (never expires)."),
    ] = None,
    idle_timeout: Annotated[
        str | None, typer.Option("--idle-timeout", metavar="DUR", help="New idle timeout (0s: none).")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Give a sandbox more (or less) time; prints its new expiry (or its record with --json).

    The idle clock restarts. On Daytona the sandbox's own TTL and auto-stop follow; Docker
    labels cannot change, so a container's `sandboxctl.expires-at` keeps its creation-time value.

    Examples:

      sandboxctl extend my-debug-box --ttl 2h

      sandboxctl extend 3f2a --policy permanent

      sandboxctl extend 3f2a --idle-timeout 30m --json
    """
    from sandboxctl.services.lifetime import LifetimeChange, extend_sandbox  # lazy: keeps --help free of SQLModel

    app: Context = ctx.obj
    change = LifetimeChange(
        ttl=parse_duration(ttl, allow_zero=False) if ttl is not None else None,
        policy=policy,
        idle_timeout=parse_duration(idle_timeout) if idle_timeout is not None else None,
    )
    record = extend_sandbox(app, sandbox, change)
    if json_:
        render.emit_json(record.to_json())
        return
    render.emit_line(record.to_json()["expires_at"] or "never")
