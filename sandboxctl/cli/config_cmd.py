"""`sandboxctl config show | get KEY | set KEY VALUE | path`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import JsonOption
from sandboxctl.config import ENV_DB, KEYS, Settings, set_config_value, show_value
from sandboxctl.dburl import masked
from sandboxctl.services.context import Context

app = typer.Typer(help="Show or change settings (config.toml).", no_args_is_help=True, rich_markup_mode=None)
# What an unset key means, where that is not simply "nothing".
_WHEN_UNSET = {"daytona.target": "(organization default region)"}


def _settings(ctx: typer.Context) -> Settings:
    context: Context = ctx.obj
    return context.settings


@app.command("show")
def show(ctx: typer.Context, *, json_: JsonOption = False) -> None:
    """Every setting with its value and where it came from (flag > env > file > default). Secrets are masked."""
    settings = _settings(ctx)
    resolved = [settings.setting(name) for name in KEYS]
    # The registry (--db > SANDBOXCTL_DB > the file under SANDBOXCTL_HOME), its password masked.
    db = masked(settings.paths.db_url)
    if json_:
        shown = {s.key: {"value": show_value(s), "source": s.source} for s in resolved}
        render.emit_json({**shown, "db": {"value": db, "source": settings.paths.db_source}})
        return
    rows = [[s.key, show_value(s) or _WHEN_UNSET.get(s.key, "-"), s.source, KEYS[s.key].env_var] for s in resolved]
    render.table(("KEY", "VALUE", "SOURCE", "ENV"), [*rows, ["db", db, settings.paths.db_source, ENV_DB]])


@app.command("get")
def get(ctx: typer.Context, key: Annotated[str, typer.Argument(help="e.g. ttl.default")]) -> None:
    """Print one setting's value (secrets are masked)."""
    render.emit_line(show_value(_settings(ctx).setting(key)) or "")


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="e.g. ttl.default")],
    value: Annotated[str, typer.Argument(help="e.g. 12h")],
) -> None:
    """Validate and write one setting to config.toml (atomically, mode 0600)."""
    set_config_value(_settings(ctx).paths.config_file, key, value)


@app.command("path")
def path(ctx: typer.Context) -> None:
    """Print where config.toml lives."""
    render.emit_line(str(_settings(ctx).paths.config_file))
