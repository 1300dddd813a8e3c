"""Regenerate the shell completion scripts from the app: `python completions/generate.py`.

The scripts call back into `sandboxctl` for candidates, so commands, options and
choices are always the installed version's; `tests/test_completions.py` fails when
these files differ from what the app generates.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHELLS = {"bash": "sandboxctl.bash", "zsh": "_sandboxctl", "fish": "sandboxctl.fish"}


def render(shell: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "sandboxctl", "--show-completion", shell], capture_output=True, text=True, check=True
    ).stdout


if __name__ == "__main__":
    for shell, filename in SHELLS.items():
        (HERE / filename).write_text(render(shell))
        print(HERE / filename)
