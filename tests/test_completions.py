"""The checked-in completion scripts are what the app generates, and completion really completes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, SANDBOXCTL

spec = importlib.util.spec_from_file_location("generate", REPO / "completions" / "generate.py")
assert spec and spec.loader
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)


@pytest.mark.parametrize("shell", sorted(generate.SHELLS))
def test_completion_scripts_are_current(shell: str) -> None:
    checked_in = (REPO / "completions" / generate.SHELLS[shell]).read_text()
    assert checked_in == generate.render(shell), f"stale: run `python completions/generate.py` ({shell})"


def _complete(words: str, cword: int, home: Path) -> list[str]:
    env = {
        **os.environ,
        "_SANDBOXCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
        "SANDBOXCTL_HOME": str(home),
    }
    return subprocess.run([SANDBOXCTL], env=env, capture_output=True, text=True).stdout.split()


def test_bash_completion_knows_commands_and_choices(home: Path) -> None:
    assert "create" in _complete("sandboxctl cr", 1, home)
    assert {"cleanup", "agent-run"} <= set(_complete("sandboxctl ", 1, home))
    assert _complete("sandboxctl create --policy ", 3, home) == ["default", "extended", "permanent"]
