"""docs/reference.md is what the app generates, and the README points at it (not at files users lack)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

from .conftest import REPO

spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
assert spec and spec.loader
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)


def test_reference_is_current() -> None:
    checked_in = generate.REFERENCE.read_text()
    assert checked_in == generate.render(checked_in), "stale: run `python docs/generate.py`"


def test_reference_lists_every_command_and_option() -> None:
    """Spot check against the installed CLI's own help: each command and each of cleanup's flags."""
    reference = generate.REFERENCE.read_text()
    for command in ("create", "exec", "status", "delete", "cleanup", "agent-run", "agent show", "config set"):
        assert f"### `sandboxctl {command}`" in reference, command
    help_text = subprocess.run(
        [sys.executable, "-m", "sandboxctl", "cleanup", "--help"], capture_output=True, text=True, cwd=REPO
    ).stdout
    flags = set(re.findall(r"(--[a-z][a-z-]+)", help_text))
    assert flags and all(f"`{flag}" in reference or f" {flag}" in reference for flag in flags), flags


def test_no_pointer_to_files_users_do_not_have() -> None:
    """`../shared/` (the project's private brief) never reaches users: not in README, docs or the code."""
    readme = (REPO / "README.md").read_text()
    assert "docs/reference.md" in readme
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    for name in tracked.split():
        path = REPO / name
        if path.suffix in {".md", ".py", ".toml", ""} and path.is_file() and name != "tests/test_docs.py":
            assert "shared/" not in path.read_text(errors="replace"), name


def test_ci_runs_exactly_the_readme_commands() -> None:
    """The README's two set-up commands (its first sh block) are lines of .ci/run, verbatim."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("   #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 2 and commands[0].startswith("python3 -m venv "), commands
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci_lines, command
