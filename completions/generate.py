"""Regenerate the shell completion scripts from the app: `python completions/generate.py`.

The scripts call back into `sandboxctl` for candidates, so commands, options and
choices are always the installed version's; `tests/test_completions.py` fails when
these files differ from what the app generates.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SHELLS = {"bash": "sandboxctl.bash", "zsh": "_sandboxctl", "fish": "sandboxctl.fish"}


def render(shell: str) -> str:
    """The script Typer's `--show-completion SHELL` prints, asked for the shell by name.

    `--show-completion` is a flag that detects the calling shell from the process tree (shellingham), which
    fails under pytest-xdist workers ("Shell  not supported"); naming the shell makes the output deterministic.
    """
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="sandboxctl", complete_var="_SANDBOXCTL_COMPLETE", shell=shell) + "\n"


if __name__ == "__main__":
    for shell, filename in SHELLS.items():
        (HERE / filename).write_text(render(shell))
        print(HERE / filename)
