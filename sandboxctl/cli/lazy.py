"""Commands built on first use, so that `sandboxctl --help` imports none of their modules.

Building every command costs more than the help itself: each module is imported (with its services)
and Typer reads every parameter of every command function. A lazy group knows each command by where it
lives and the first paragraph of its help, which is all its listing, `Did you mean` and the completion
of command names need; a command is built (its module imported) only when it is looked up by name:
run, asked for `--help`, or completed past its name. This is Click's documented "lazy loading
subcommands" pattern. tests/test_help.py proves the summaries match the commands' own help.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup
from typer.main import get_group

if TYPE_CHECKING:  # Typer vendors Click (typer._click): no `click` package is installed
    from typer import _click as click
    from typer._click.shell_completion import CompletionItem


@dataclass(frozen=True)
class LazyCommand:
    """A command by where it lives, with the first paragraph of its help for listings."""

    module: str  # e.g. "sandboxctl.cli.create"
    attribute: str  # the command's function, or a `typer.Typer` holding a group of commands
    summary: str  # the first paragraph of its help, whitespace collapsed (checked by tests/test_help.py)
    epilog: str | None = None  # the name of a module attribute holding the command's epilog, if any

    def register(self, app: typer.Typer, name: str) -> None:
        """Import the module and register the command on `app` as `name`."""
        module = importlib.import_module(self.module)
        target = getattr(module, self.attribute)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name, epilog=getattr(module, self.epilog) if self.epilog else None)(target)


class LazyCommands(MutableMapping[str, "click.Command"]):
    """A group's commands by name: the table's names at once, each command built when first looked up.

    Iterating gives names only; `commands[name]` (and `.get`, `.items()`) builds. Typer, Click, the docs
    generator and the tests all read a group's `commands` mapping, so they need no change."""

    def __init__(self, table: Mapping[str, LazyCommand], build: Callable[[str], click.Command]) -> None:
        self._table = table
        self._build = build
        self._built: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._built:
            if name not in self._table:
                raise KeyError(name)
            self._built[name] = self._build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._table
        yield from (name for name in self._built if name not in self._table)

    def __len__(self) -> int:
        return len(self._table) + sum(name not in self._table for name in self._built)

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._built

    def summary(self, name: str) -> str | None:
        """The table's summary of `name` while it is not built; None once it is (or if it is not lazy)."""
        entry = self._table.get(name)
        return entry.summary if entry is not None and name not in self._built else None


class LazyGroup(TyperGroup):
    """A Typer group whose commands come from `lazy`, each built by `build` when first looked up."""

    lazy: ClassVar[Mapping[str, LazyCommand]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._lazy_commands = LazyCommands(self.lazy, self.build)
        self._lazy_commands.update(self.commands)  # any Typer built up front (none for the root)
        self.commands = self._lazy_commands

    def build(self, name: str) -> click.Command:
        """The command `name` as Typer builds it when registered on a root with this group's settings."""
        holder = typer.Typer(
            rich_markup_mode=self.rich_markup_mode, suggest_commands=self.suggest_commands, add_completion=False
        )
        self.register(holder, name)
        return get_group(holder).commands[name]

    def register(self, app: typer.Typer, name: str) -> None:
        """Register `name` on `app` (subclasses add what their root adds to its commands, e.g. an epilog)."""
        self.lazy[name].register(app, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # names only: TyperGroup's `commands.items()` would build every command

    def command_summary(self, ctx: click.Context, name: str, limit: int = 45) -> str | None:
        """`name`'s one-line help as Click shortens it, None if there is no such command or it is hidden;
        from the table's summary while the command is not built."""
        summary = self._lazy_commands.summary(name)
        if summary is not None:
            return make_default_short_help(summary, limit)
        command = self.get_command(ctx, name)
        return None if command is None or command.hidden else command.get_short_help_str(limit)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """TyperGroup's completion (command names with their one-line help, then options), building none."""
        from typer._click.core import Command
        from typer._click.shell_completion import CompletionItem

        results = [
            CompletionItem(name, help=help_text)
            for name in self.list_commands(ctx)
            if name.startswith(incomplete) and (help_text := self.command_summary(ctx, name)) is not None
        ]
        results.extend(Command.shell_complete(self, ctx, incomplete))
        return results
