"""`--env` and `--env-file` for create, exec and agent-run: one parser, so secrets can stay off the command line.

`--env KEY=VALUE` puts the value in `ps` and shell history; `--env KEY` takes it
from sandboxctl's own environment (like `docker run -e KEY`) and `--env-file FILE`
reads `KEY=VALUE` lines. Unlike docker, a bare `KEY` that is not set is an error,
not silently skipped: a missing secret should fail the command, not the agent later.
Values are secrets: no message here ever contains one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from sandboxctl.errors import UsageError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _key(text: str) -> str | None:
    return text if _KEY.fullmatch(text) else None


def read_env_file(path: str) -> dict[str, str]:
    """`KEY=VALUE` per line, the value taken literally (no quotes, no expansion); `#` comments, blank lines skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"cannot read --env-file {path}: {reason}") from None
    env: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = line.lstrip().partition("=")
        if not sep or _key(key) is None:
            # Name the place, never the content: the line may hold a secret.
            raise UsageError(
                f"invalid line in --env-file {path}:{number}: use NAME=VALUE with NAME a shell variable name"
            )
        env[key] = value
    return env


def collect_env(
    items: Iterable[str], files: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Files first, in order, then `--env` items (which win): `KEY=VALUE`, or `KEY` read from `environ`."""
    source = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for path in files:
        env.update(read_env_file(path))
    for item in items:
        key, sep, value = item.partition("=")
        if _key(key) is None:
            raise UsageError(f"invalid --env for key {key!r}: use NAME=VALUE or NAME, with NAME a shell variable name")
        if not sep:
            if key not in source:
                raise UsageError(f"--env {key}: {key} is not set in sandboxctl's environment")
            value = source[key]
        env[key] = value
    return env
