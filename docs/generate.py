"""Regenerate the generated parts of docs/reference.md from the code: `python docs/generate.py`.

The commands and their flags come from the Typer app, the configuration keys from
`config.KEYS`, so the reference cannot drift from what the installed CLI accepts;
`tests/test_docs.py` fails when the checked-in file differs from what this renders.
The hand-written parts (exit codes, JSON fields, labels) sit between the markers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import typer.main

from sandboxctl.cli.app import app
from sandboxctl.config import KEYS

REFERENCE = Path(__file__).resolve().parent / "reference.md"
SECTIONS = ("commands", "config")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _command(cmd: Any, ctx: Any, path: str, out: list[str]) -> None:
    subcommands = getattr(cmd, "commands", {})
    if not cmd.hidden:
        out.append(f"### `{path}`\n")
        if cmd.help:
            out.append(cmd.help.strip().split("\n\n")[0].replace("\n", " ") + "\n")
        out.append(f"```\n{path} {' '.join(cmd.collect_usage_pieces(ctx))}\n```\n")
        rows = [
            record
            for param in cmd.get_params(ctx)
            if not getattr(param, "hidden", False) and (record := param.get_help_record(ctx)) is not None
        ]
        if rows:
            out.append("| argument / option | |\n|---|---|")
            out.extend(f"| `{_cell(name)}` | {_cell(help_text)} |" for name, help_text in rows)
            out.append("")
        examples = [
            line.strip() for line in (cmd.epilog or "").splitlines() if line.strip() not in ("\b", "Examples:", "")
        ]
        if examples:
            out.append("Examples:\n\n```\n" + "\n".join(examples) + "\n```\n")
    for name, sub in sorted(subcommands.items()):
        _command(sub, sub.context_class(sub, info_name=name, parent=ctx), f"{path} {name}", out)


def render_commands() -> str:
    root = typer.main.get_command(app)
    out: list[str] = []
    _command(root, root.context_class(root, info_name="sandboxctl"), "sandboxctl", out)
    return "\n".join(out).rstrip() + "\n"


def render_config() -> str:
    out = ["| key | default | environment variable | |", "|---|---|---|---|"]
    for key in KEYS.values():
        default = f"`{key.default}`" if key.default is not None else "-"
        secret = " (secret: masked by `config show`)" if key.secret else ""
        out.append(f"| `{key.name}` | {default} | `{key.env_var}` | {_cell(key.help)}{secret} |")
    return "\n".join(out) + "\n"


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN GENERATED {name}: python docs/generate.py -->\n",
        f"<!-- END GENERATED {name} -->",
    )


def render(text: str) -> str:
    """`text` with every generated section replaced by what the code renders now."""
    renderers = {"commands": render_commands, "config": render_config}
    for name in SECTIONS:
        begin, end = _markers(name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"{REFERENCE}: no {name!r} markers")
        section = begin + "\n" + renderers[name]() + "\n" + end
        text = pattern.sub(lambda _match, section=section: section, text)
    return text


if __name__ == "__main__":
    REFERENCE.write_text(render(REFERENCE.read_text()))
    sys.stdout.write(f"{REFERENCE}\n")
