"""Examples shown at the end of every command's `--help`, and the sections of `sandboxctl --help`.

Kept in one table so that a new command gets its examples (and its section) in one place;
tests/test_help.py fails for a command without them. Each text starts with `\\b` so Click
prints its lines as written instead of rewrapping them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from typer.models import DefaultPlaceholder

from sandboxctl.cli.lazy import LazyGroup

if TYPE_CHECKING:  # Typer vendors Click (typer._click): no `click` package is installed
    from typer import _click as click


def _examples(*lines: tuple[str, str]) -> str:
    width = max(len(command) for command, _ in lines)
    body = "\n".join(f"  {command.ljust(width)}  # {why}" for command, why in lines)
    return f"\b\nExamples:\n{body}\n"


EXAMPLES: dict[str, str] = {
    "": _examples(
        ("sandboxctl create --name tour --ttl 2h", "a sandbox for two hours"),
        ("sandboxctl exec tour -- uname -a", "run a command in it"),
        ("sandboxctl cleanup --dry-run", "what cleanup would delete now"),
    ),
    "create": _examples(
        ("sandboxctl create --name tour", "a docker sandbox (config `image`), id printed"),
        ("sandboxctl create -b local --ttl 30m -l team=ml", "local, 30 minutes, labelled"),
        ("sandboxctl create -i python:3.12 --cpus 2 --memory 1g --json", "limits; the record as JSON"),
    ),
    "exec": _examples(
        ("sandboxctl exec tour -- ls -la /workspace", "output streamed, exit code returned"),
        ("sandboxctl exec tour --timeout 5m -e TOKEN -- make test", "killed after 5 minutes (exit 124)"),
        ("sandboxctl exec -it tour -- sh", "an interactive terminal"),
    ),
    "shell": _examples(
        ("sandboxctl shell tour", "the sandbox's login shell"),
        ("sandboxctl shell 3f2a -- vi /etc/hosts", "one program on a terminal (id prefix)"),
        ("sandboxctl exec -it tour -w /tmp -- top", "the same through exec"),
    ),
    "cp": _examples(
        ("sandboxctl cp tour:/workspace/out.log .", "a file out of a sandbox"),
        ("sandboxctl cp ./fix/. tour:/workspace/src", "a directory's content in"),
        ("sandboxctl cp tour:/etc - | tar -tv", "a tar on stdout (`-` as SRC reads one from stdin)"),
    ),
    "status": _examples(
        ("sandboxctl status", "live sandboxes, newest first"),
        ("sandboxctl status --state failed -l team=ml --sort expires", "filtered and sorted"),
        ("sandboxctl status --expired -q | xargs sandboxctl delete", "ids only, for scripts"),
    ),
    "delete": _examples(
        ("sandboxctl delete tour", "by name"),
        ("sandboxctl delete 3f2a 9bc1 --json", "several, by id prefix; outcomes as JSON"),
        ("sandboxctl status -q -l ci=1 | xargs sandboxctl delete", "every sandbox with a label"),
    ),
    "extend": _examples(
        ("sandboxctl extend tour --ttl 2h", "expires two hours from now"),
        ("sandboxctl extend tour --policy permanent", "never expires"),
    ),
    "cleanup": _examples(
        ("sandboxctl cleanup --dry-run", "what would go, changing nothing"),
        ("sandboxctl cleanup --older-than 7d --json", "also anything older than a week"),
        ("sandboxctl cleanup --orphans -l team=ml", "also labelled resources without a record"),
    ),
    "agent-run": _examples(
        ("sandboxctl agent-run --repo . --task 'fix the tests' -- my-agent", "patch and summary in ./.sandboxctl"),
        ("sandboxctl agent-run --repo . --keep always -t 30m -- my-agent", "keep the sandbox afterwards"),
        ("sandboxctl agent-run --repo . --events - --json -- my-agent", "events and summary for scripts"),
    ),
    "agent": _examples(
        ("sandboxctl agent list", "recent runs, newest first"),
        ("sandboxctl agent show 5d1e", "one run (id prefix)"),
        ("sandboxctl agent send 5d1e 'use python 3.12'", "a message to a running agent"),
    ),
    "agent list": _examples(
        ("sandboxctl agent list --state running", "runs in progress"),
        ("sandboxctl agent list --state failed --state timed_out --since 1d", "what went wrong today"),
        ("sandboxctl agent list --state cancelled -q | xargs -n1 sandboxctl agent show", "ids, for scripts"),
    ),
    "agent show": _examples(
        ("sandboxctl agent show 5d1e", "status, steps, changed files (id prefix)"),
        ("sandboxctl agent show 5d1e --json", "the whole record as JSON"),
    ),
    "agent send": _examples(
        ("sandboxctl agent send 5d1e 'use python 3.12'", "one line in the agent's inbox"),
        ("echo 'stop after the tests' | sandboxctl agent send 5d1e -", "the message from stdin"),
    ),
    "agent logs": _examples(
        ("sandboxctl agent logs 5d1e", "a run's output so far"),
        ("sandboxctl agent logs 5d1e --follow", "until the run ends, with its exit code"),
    ),
    "agent cancel": _examples(
        ("sandboxctl agent cancel 5d1e", "stop a running agent from another terminal"),
        ("sandboxctl agent cancel 5d1e && sandboxctl agent show 5d1e", "then see what became of it"),
    ),
    "config": _examples(
        ("sandboxctl config show", "every setting and where it comes from"),
        ("sandboxctl config set image python:3.12-slim", "change the default image"),
        ("sandboxctl config get backend", "one value"),
    ),
    "config show": _examples(
        ("sandboxctl config show", "a table: value, source, environment variable"),
        ("sandboxctl config show --json", "as JSON"),
    ),
    "config get": _examples(
        ("sandboxctl config get image", "one value"),
        ("sandboxctl config get ttl.default", "a dotted key"),
    ),
    "config set": _examples(
        ("sandboxctl config set backend local", "validated, written atomically"),
        ("sandboxctl config set cleanup.limit 50", "a dotted key"),
    ),
    "config path": _examples(
        ("sandboxctl config path", "where config.toml lives"),
        ('$EDITOR "$(sandboxctl config path)"', "edit it by hand"),
    ),
}

# `sandboxctl --help` lists commands under these headings, in this order; a command missing here
# is listed under "Other commands" (and tests/test_help.py fails).
SECTIONS: dict[str, tuple[str, ...]] = {
    "Sandboxes": ("create", "exec", "shell", "cp", "status", "extend", "delete"),
    "Cleanup": ("cleanup",),
    "Agents": ("agent-run", "agent"),
    "Config": ("config",),
}


class SectionedGroup(LazyGroup):
    """The root group: `--help` lists commands under SECTIONS' headings, and every command gets its examples.

    Typer's `rich_help_panel` does this only in rich markup mode, and rich's help renderer costs
    ~90 ms of every `--help`; this is plain Click formatting. The one-line help comes from the lazy
    table (cli/lazy.py), so listing the commands imports none of them."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        visible = [name for name in self.list_commands(ctx) if self.command_summary(ctx, name) is not None]
        placed = {name for names in SECTIONS.values() for name in names}
        sections = [*SECTIONS.items(), ("Other commands", tuple(n for n in visible if n not in placed))]
        width = max((len(name) for name in visible), default=0)  # one column for every section
        limit = formatter.width - 6 - width
        for heading, names in sections:
            rows = [
                (name.ljust(width), self.command_summary(ctx, name, limit) or "") for name in names if name in visible
            ]
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows)

    def register(self, app: typer.Typer, name: str) -> None:
        super().register(app, name)
        attach_examples(app)


def attach_examples(app: typer.Typer, prefix: str = "") -> None:
    """Give every command registered on `app` (and its sub-apps) its EXAMPLES as epilog, unless it has one."""
    for info in app.registered_commands:
        name = info.name or ""
        if _unset(info.epilog) and f"{prefix}{name}" in EXAMPLES:
            info.epilog = EXAMPLES[f"{prefix}{name}"]
    for group in app.registered_groups:
        name = group.name or ""
        if _unset(group.epilog) and f"{prefix}{name}" in EXAMPLES:
            group.epilog = EXAMPLES[f"{prefix}{name}"]
        if group.typer_instance is not None:
            attach_examples(group.typer_instance, f"{prefix}{name} ")


def _unset(value: object) -> bool:
    return value is None or isinstance(value, DefaultPlaceholder)
