"""`sandboxctl create`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import fast
from sandboxctl.cli.options import BackendOption, EnvFileOption, EnvOption, JsonOption, LabelOption
from sandboxctl.registry.states import Policy


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
    fast.create(
        ctx.obj,
        backend=backend,
        image=image,
        name=name,
        policy=policy,
        ttl=ttl,
        idle_timeout=idle_timeout,
        label=label or [],
        env=env or [],
        env_file=env_file or [],
        cpus=cpus,
        memory=memory,
        json_=json_,
    )
