"""Help that teaches: grouped commands in `sandboxctl --help`, examples at the end of every command's help."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from sandboxctl.cli.app import COMMANDS, app
from sandboxctl.cli.examples import SECTIONS, attach_examples

from .conftest import Cli


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _commands(sub, (*path, name))


ALL_COMMANDS = list(_commands(typer.main.get_command(app)))


def test_root_help_groups_commands_under_headings(cli: Cli) -> None:
    text = cli.ok("--help").stdout
    headings = re.findall(r"^(\S[^:\n]*):$", text, flags=re.MULTILINE)
    assert headings == ["Options", *SECTIONS], text
    assert "Other commands" not in text and "\nCommands:" not in text, text
    for heading, names in SECTIONS.items():
        section = text.split(f"\n{heading}:\n", 1)[1].split("\n\n", 1)[0]
        listed = [line.split()[0] for line in section.splitlines()]
        assert listed == [n for n in names if (n,) in ALL_COMMANDS], (heading, section)
    top = {path[0] for path in ALL_COMMANDS if len(path) == 1}
    assert top == {n for names in SECTIONS.values() for n in names} & top  # every command has a section


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "sandboxctl")
def test_every_help_ends_with_two_or_three_examples(path: tuple[str, ...]) -> None:
    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="sandboxctl", terminal_width=100)
    command: Any = root
    for name in path:
        command = command.commands[name]
        ctx = typer.Context(command, info_name=name, parent=ctx, terminal_width=100)
    text = command.get_help(ctx).rstrip("\n")
    examples = text.rsplit("\n  Examples:\n", 1)
    assert len(examples) == 2, text
    lines = examples[1].splitlines()
    assert 2 <= len(lines) <= 3 and all(re.match(r"    \S.*  # \w", line) and "sandboxctl" in line for line in lines), (
        text
    )


def test_help_stays_free_of_rich() -> None:
    """Grouping is plain Click formatting: rich's renderer would cost ~90 ms of every --help."""
    code = (
        "import sys\n"
        "from sandboxctl.cli import run\n"
        "run(['--help']); run(['status', '--help'])\n"
        "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip() == "[]", proc.stderr


@pytest.mark.parametrize("args", [(), ("agent",), ("config",)])
def test_a_group_without_a_command_prints_its_help_as_written(cli: Cli, args: tuple[str, ...]) -> None:
    """Not one folded `error:` line: the help itself, on stderr, and exit 2 (no command was given)."""
    result = cli(*args)
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("Usage: sandboxctl") and "\n  Examples:\n" in result.stderr, str(result)
    assert result.stdout == "", str(result)


# -- lazy commands (cli/lazy.py): the root lists them from a table, each is built when looked up ------------


def _eager_root() -> Any:
    """The root as it was built before commands were lazy: every command registered on the root app itself,
    so Typer builds them all at once, with the root's own settings, and the listing reads their real help."""
    eager = copy.copy(app)
    eager.registered_commands, eager.registered_groups = [], []
    for name, entry in COMMANDS.items():
        entry.register(eager, name)
    attach_examples(eager)
    return typer.main.get_command(eager)


def _help(root: Any, path: tuple[str, ...], width: int) -> str:
    ctx = typer.Context(root, info_name="sandboxctl", terminal_width=width)
    command = root
    for name in path:
        command = command.get_command(ctx, name)
        ctx = typer.Context(command, info_name=name, parent=ctx, terminal_width=width)
    return command.get_help(ctx)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_lazy_summary_is_the_first_paragraph_of_the_commands_help(name: str) -> None:
    command = _eager_root().commands[name]
    first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert COMMANDS[name].summary == first_paragraph, f"update COMMANDS[{name!r}] in cli/app.py"
    assert (command.short_help, command.hidden, command.deprecated) == (None, False, False), name


@pytest.mark.parametrize("width", [40, 80, 200])
@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "sandboxctl")
def test_help_is_the_same_built_lazily_or_eagerly(path: tuple[str, ...], width: int) -> None:
    """Byte for byte, at widths that shorten the one-line summaries differently: the root lazily lists
    commands it has not built, and a command looked up alone is built as the root would build it."""
    lazy = typer.main.get_command(app)
    assert _help(lazy, path, width) == _help(_eager_root(), path, width)
    if not path:
        assert all(lazy.commands.summary(name) is not None for name in COMMANDS), "the listing built a command"


@pytest.mark.parametrize("incomplete", ["", "a", "c", "-"])
def test_command_names_complete_the_same_built_lazily_or_eagerly(incomplete: str) -> None:
    def completions(root: Any) -> list[tuple[str, str | None]]:
        ctx = typer.Context(root, info_name="sandboxctl")
        return [(item.value, item.help) for item in root.shell_complete(ctx, incomplete)]

    lazy = typer.main.get_command(app)
    assert completions(lazy) == completions(_eager_root())
    assert all(lazy.commands.summary(name) is not None for name in COMMANDS), "completion built a command"
