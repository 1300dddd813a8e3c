"""`sandboxctl create`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import BackendOption, EnvFileOption, EnvOption, JsonOption, LabelOption
from sandboxctl.durations import parse_duration
from sandboxctl.envvars import collect_env
from sandboxctl.labels import parse_labels
from sandboxctl.limits import check_cpus, parse_memory
from sandboxctl.registry.states import Policy
from sandboxctl.services.context import Context


def create_cmd(
    ctx: typer.Context,
    *,
    backend: BackendOption = None,
    image: Annotated[str | None, typer.Option("--image", "-i", help="Image (default: config `image`).")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A unique name to use instead of the id.")] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", metavar="DUR", help="Lifetime, overriding the policy's.")] = None,
    idle_timeout: Annotated[
        str | None, typer.Option("--idle-timeout", metavar="DUR", help="Delete after this long without exec.")
    ] = None,
    policy: Annotated[
        Policy, typer.Option("--policy", help="default (24h), extended (7d) or permanent (never expires).")
    ] = Policy.DEFAULT,
    label: LabelOption = None,
    env: EnvOption = None,
    env_file: EnvFileOption = None,
    cpus: Annotated[float | None, typer.Option("--cpus", help="CPU limit, e.g. 1.5.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", metavar="SIZE", help="Memory limit, e.g. 512m, 2g.")] = None,
    json_: JsonOption = False,
) -> None:
    """Create a sandbox and print its id (or its record with --json)."""
    # Imported here: keeps --help free of SQLModel.
    from sandboxctl.services.lifecycle import CreateOptions, create_sandbox

    app: Context = ctx.obj
    options = CreateOptions(
        backend=backend or app.settings.backend,
        image=image,
        name=name,
        policy=policy,
        ttl=parse_duration(ttl) if ttl is not None else None,
        idle_timeout=parse_duration(idle_timeout) if idle_timeout is not None else None,
        labels=parse_labels(label or []),
        env=collect_env(env or [], env_file or []),
        cpus=check_cpus(cpus) if cpus is not None else None,
        memory_bytes=parse_memory(memory) if memory is not None else None,
    )
    record = create_sandbox(app, options)
    if json_:
        render.emit_json(record.to_json())
        return
    render.emit_line(record.id)
