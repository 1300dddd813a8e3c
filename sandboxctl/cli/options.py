"""Option types shared by several commands, so every command spells them the same way."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
LabelOption = Annotated[
    list[str] | None, typer.Option("--label", "-l", metavar="K=V", help="Label selector/label; repeatable.")
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        "-e",
        metavar="K=V|K",
        help="Environment variable; repeatable. A bare K takes its value from this environment.",
    ),
]
EnvFileOption = Annotated[
    list[str] | None,
    typer.Option("--env-file", metavar="FILE", help="KEY=VALUE lines (# comments); repeatable; --env wins."),
]
BackendOption = Annotated[
    str | None, typer.Option("--backend", "-b", help="docker, daytona or local (default: config `backend`).")
]
UserOption = Annotated[
    str | None,
    typer.Option("--user", "-u", metavar="NAME", help="Only sandboxes created by NAME (their `created_by`)."),
]
