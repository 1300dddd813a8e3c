"""The house rules that code review keeps missing: layers, one exit-code constant, one printer, light reads."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SANDBOXCTL

PACKAGE = Path(__file__).resolve().parent.parent / "sandboxctl"
# cli/ -> services/ -> registry/ + backends/ -> leaves: nothing imports a file above it.
LAYERS = {"cli": 3, "services": 2, "registry": 1, "backends": 1}


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in PACKAGE.rglob("*.py")}


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 and parts[0] == "sandboxctl" else ""
    return room, LAYERS.get(room, 0)


def _imports(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name.startswith("sandboxctl.")]


def test_no_file_imports_a_file_above_it_and_registry_and_backends_stay_apart() -> None:
    for path, tree in _modules().items():
        module = "sandboxctl." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if module == "sandboxctl.__main__":  # the entry point stands above the house
            continue
        room, level = _layer(module)
        for imported in _imports(tree):
            other_room, other_level = _layer(imported)
            assert other_level <= level, f"{module} imports {imported} from a floor above"
            if level == 1 and other_level == 1:
                assert other_room == room, (
                    f"{module} imports {imported}: registry and backends know nothing of each other"
                )


def test_exit_code_124_is_spelled_once() -> None:
    spelled = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value == 124
    ]
    assert [where.split(":")[0] for where in spelled] == ["errors.py"], spelled  # EXIT_TIMEOUT, once


def test_only_render_prints_data_in_the_cli() -> None:
    """`cli/render.py` prints data; `cli/__init__.py` prints the one error line; nothing else writes."""
    for path, tree in _modules().items():
        if path.parent.name != "cli" or path.name in ("render.py", "__init__.py"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                text = ast.unparse(node.func)
                assert text not in ("print", "sys.stdout.write", "sys.stderr.write"), f"{path.name}:{node.lineno}"


def test_everyday_paths_import_neither_sqlmodel_nor_sqlalchemy() -> None:
    code = (
        "import sys\n"
        "import sandboxctl.cli.exec_fast, sandboxctl.services.execution, sandboxctl.services.listing\n"
        "import sandboxctl.registry.reader, sandboxctl.services.context\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlmodel', 'sqlalchemy', 'docker'))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_everyday_paths_import_neither_dataclasses_nor_tenacity_nor_platformdirs() -> None:
    """`dataclasses` pulls in `inspect`, `ast` and `dis`, and every @dataclass compiles its methods: ~15 ms of
    each `exec`. Tenacity is imported only when a deletion is retried, platformdirs only off Linux's common
    case. The hot path's value types are NamedTuples and plain classes; this is the guard that keeps them so."""
    code = (
        "import sys\n"
        "import sandboxctl.cli, sandboxctl.cli.exec_fast, sandboxctl.services.execution, sandboxctl.cli.fast\n"
        "import sandboxctl.backends.docker, sandboxctl.backends.local, sandboxctl.services.leases\n"
        "import sandboxctl.services.removal, sandboxctl.services.listing, sandboxctl.services.lifecycle\n"
        "import sandboxctl.registry.status_table, sandboxctl.cli.render\n"
        "from sandboxctl.config import Settings\n"
        "Settings.load(None).paths\n"
        "heavy = sorted(m for m in ('dataclasses', 'inspect', 'tenacity', 'platformdirs') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SANDBOXCTL_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "HOME": "/nohome"}
    )
    assert result.returncode == 0, result.stderr


# A child python runs the CLI in process and reports every module it imported: `-X importtime` on the
# console script would miss lines, as `main()` leaves with `os._exit`.
_RUN_AND_LIST_MODULES = (
    "import contextlib, io, json, sys\n"
    "from sandboxctl.cli import run\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
    "    try:\n"
    "        run(sys.argv[1:])\n"
    "    except SystemExit:  # shell completion exits from inside Click\n"
    "        pass\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


def _command_modules_imported_by(*argv: str, env: dict[str, str] | None = None) -> list[str]:
    """The command modules (cli/app.py's COMMANDS) imported by running `sandboxctl ARGV` in a child python."""
    from sandboxctl.cli.app import COMMANDS

    proc = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST_MODULES, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout.splitlines()[-1]))
    return sorted({entry.module for entry in COMMANDS.values()} & modules)


_COMPLETE_A_COMMAND_NAME = {"_SANDBOXCTL_COMPLETE": "complete_bash", "COMP_WORDS": "sandboxctl c", "COMP_CWORD": "1"}


@pytest.mark.parametrize(
    ("argv", "env"),
    [(("--help",), None), (("-h",), None), ((), None), (("nope",), None), ((), _COMPLETE_A_COMMAND_NAME)],
    ids=["--help", "-h", "no-args", "unknown-command", "completing-a-command-name"],
)
def test_root_help_and_command_names_import_no_command_module(
    home: Path, argv: tuple[str, ...], env: dict[str, str] | None
) -> None:
    """The root listing, its errors and name completion read the lazy table (cli/lazy.py), not the commands."""
    assert _command_modules_imported_by(*argv, env=env) == []


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (("status", "--help"), "sandboxctl.cli.status"),
        (("cp", "--help"), "sandboxctl.cli.cp"),
        (("agent", "list", "--help"), "sandboxctl.cli.agent"),
        (("config", "path"), "sandboxctl.cli.config_cmd"),
    ],
    ids=["status --help", "cp --help", "agent list --help", "config path"],
)
def test_one_command_imports_only_its_own_module(home: Path, argv: tuple[str, ...], module: str) -> None:
    assert _command_modules_imported_by(*argv) == [module]


def test_every_command_is_registered_lazily() -> None:
    """A command registered on the root app itself (`app.command(...)`) is imported by every `--help` again."""
    from sandboxctl.cli.app import app

    assert (app.registered_commands, app.registered_groups) == ([], []), "add it to COMMANDS in cli/app.py"


def test_exec_imports_neither_pathlib_nor_urllib(tmp_path: Path) -> None:
    """pathlib pulls in urllib.parse and ipaddress (~4 ms of CPU): exec's modules, its settings and its open
    registry work on text paths. (delete quotes container names, and so imports urllib when it runs.)"""
    code = (
        "import sys\n"
        "import sandboxctl.cli, sandboxctl.cli.exec_fast, sandboxctl.services.execution\n"
        "import sandboxctl.backends.docker, sandboxctl.services.leases\n"
        "from sandboxctl.config import Settings\n"
        "from sandboxctl.services.context import Context\n"
        "from sandboxctl.services.leases import lease_table\n"
        "ctx = Context(Settings.load(None))\n"
        "assert ctx.reader is not None\n"
        "lease_table(ctx, on_reader=True)\n"
        "heavy = sorted(m for m in ('pathlib', 'urllib.parse', 'ipaddress') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "SANDBOXCTL_HOME": str(tmp_path)}
    setup = subprocess.run([SANDBOXCTL, "status"], env=env, capture_output=True, text=True)
    assert setup.returncode == 0, setup.stderr  # the registry exists, at the current schema
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_every_archive_is_extracted_by_safe_extract() -> None:
    """tarfile's `extract`/`extractall` follow links already in the destination, and their `filter=` does not exist
    before Python 3.11.4 (Debian 12 ships 3.11.2): every extraction goes through `sandboxctl/safe_extract.py`."""
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("extract", "extractall")
                and path.name != "safe_extract.py"
            ):
                assert ast.unparse(node.value) == "safe_extract", f"{path.name}:{node.lineno}: {ast.unparse(node)}"
