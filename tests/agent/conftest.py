"""Helpers for the agent-run tests: a user's git checkout with a bare origin, the backend to run on, events."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import SANDBOXCTL, Cli

BINARY = bytes(range(256))


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository playing the remote: `main` with README.md, data.bin and src/app.txt; a `feature` branch."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git("init", "-q", "-b", "main", cwd=seed)
    (seed / "README.md").write_text("hello\n")
    (seed / "data.bin").write_bytes(BINARY)
    (seed / "src").mkdir()
    (seed / "src" / "app.txt").write_text("app\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "initial", cwd=seed)
    git("checkout", "-q", "-b", "feature", cwd=seed)
    (seed / "FEATURE.md").write_text("only on feature\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "feature", cwd=seed)
    bare = tmp_path / "origin.git"
    git("clone", "-q", "--bare", str(seed), str(bare))
    return bare


@pytest.fixture
def repo(origin: Path, tmp_path: Path) -> Path:
    """The user's own checkout of `main` (origin = the bare repository), with an uncommitted edit."""
    checkout = tmp_path / "checkout"
    git("clone", "-q", "-b", "main", str(origin), str(checkout))
    (checkout / "src" / "app.txt").write_text("app\nuncommitted edit\n")
    return checkout


def checksum(root: Path) -> str:
    """Every path, mode, size, mtime and content under `root` (including .git): any write changes it."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}|{info.st_mode}|{info.st_size}|{info.st_mtime_ns}".encode())
            if path.is_file() and not path.is_symlink():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> list[str]:
    """`--backend ...` arguments; the docker variant uses the local busybox image and removes what it left."""
    if request.param == "docker":
        image = request.getfixturevalue("docker_image")
        request.getfixturevalue("docker_cleanup")
        return ["--backend", "docker", "--image", image]
    return ["--backend", "local"]


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(condition: Callable[[], Any], *, timeout: float = 120, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_agent_run(cli: Cli, *args: str) -> subprocess.Popen[str]:
    """`sandboxctl agent-run ARGS` in the background, for tests that talk to or signal a run in progress."""
    return subprocess.Popen(
        [SANDBOXCTL, "agent-run", *args],
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
