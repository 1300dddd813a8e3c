"""Fixtures shared by every test: an isolated SANDBOXCTL_HOME, the installed CLI, a local image.

Real-engine tests are marked `docker`. They skip only outside CI when no engine
answers; under CI=true a missing engine is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sysconfig
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_IMAGE = "sandboxctl-test/busybox:latest"
# The console script pip installed for this interpreter, not a pyenv shim (a bash wrapper costing ~0.1 s a call).
_SCRIPT = Path(sysconfig.get_path("scripts")) / "sandboxctl"
SANDBOXCTL = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("sandboxctl") or "sandboxctl")


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:  # shown in assertion messages
        return f"$ sandboxctl {' '.join(self.args)} -> {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"


class Cli:
    """Runs the installed `sandboxctl` as a real subprocess with this test's environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> Result:
        proc = subprocess.run(
            [SANDBOXCTL, *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )
        return Result(list(args), proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.returncode == 0, str(result)
        return result


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own SANDBOXCTL_HOME; nothing touches the real user directories."""
    path = tmp_path / "home"
    monkeypatch.setenv("SANDBOXCTL_HOME", str(path))
    monkeypatch.delenv("SANDBOXCTL_DB", raising=False)
    monkeypatch.delenv("SANDBOXCTL_DEBUG", raising=False)
    for key in list(os.environ):
        if key.startswith("SANDBOXCTL_") and key not in ("SANDBOXCTL_HOME",) and not key.startswith("SANDBOXCTL_TEST"):
            monkeypatch.delenv(key, raising=False)
    return path


@pytest.fixture
def cli(home: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}
    env.update(SANDBOXCTL_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    return Cli(env)


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if not docker_answers():
        if os.environ.get("CI"):
            pytest.fail("CI=true but no Docker engine answers: real-engine tests must run in CI")
        pytest.skip("no Docker engine answers (start dockerd, or run .ci/run)")


@pytest.fixture(scope="session")
def docker_image(docker_engine: None) -> str:
    """A busybox image built locally from the host's static busybox (nothing can be pulled)."""
    subprocess.run(
        [str(REPO / "tests" / "images" / "build-busybox-image.sh"), TEST_IMAGE], check=True, capture_output=True
    )
    return TEST_IMAGE


def sandbox_containers(home_or_id: str) -> list[str]:
    """Ids of containers labelled with this sandbox id (all states)."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=sandboxctl.id={home_or_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


@pytest.fixture
def docker_cleanup(cli: Cli) -> Iterator[None]:
    """After a Docker test: remove every container whose sandbox this test's registry knows, so no test leaks."""
    yield
    result = cli("status", "--all", "--json")
    if result.returncode != 0:
        return
    for record in result.json():
        ids = sandbox_containers(record["id"])
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def _labelled_containers() -> dict[str, str]:
    """Container id -> its `sandboxctl.registry` label, for every sandboxctl container on the engine."""
    proc = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            "label=sandboxctl.id",
            "--format",
            '{{.ID}} {{.Label "sandboxctl.registry"}}',
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return {}
    pairs = (line.split(" ", 1) for line in proc.stdout.splitlines() if line.strip())
    return {pair[0]: (pair[1] if len(pair) > 1 else "") for pair in pairs}


def _session_registry_ids(basetemp: Path) -> set[str]:
    """Registry ids of every registry.db this session's tests made (each xdist worker has its own basetemp)."""
    ids: set[str] = set()
    for db in basetemp.rglob("registry.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                row = conn.execute("SELECT value FROM registry_meta WHERE key = 'registry_id'").fetchone()
        except sqlite3.Error:
            continue
        if row:
            ids.add(row[0])
    return ids


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Backstop: remove containers this session's own registries created and left.

    Only containers labelled with a registry made under this session's basetemp are touched, so a
    parallel pytest run (another checkout, another xdist worker) never loses its containers.
    """
    if shutil.which("docker") is None or not docker_answers():
        yield
        return
    before = set(_labelled_containers())
    yield
    ours = _session_registry_ids(tmp_path_factory.getbasetemp())
    leaked = [cid for cid, reg in _labelled_containers().items() if cid not in before and reg in ours]
    if leaked:
        subprocess.run(["docker", "rm", "-f", *leaked], capture_output=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for this session (worker). Under CI=true a missing server is a failure."""
    from .pgcluster import postgres_bindir, remove_cluster, start_cluster

    if postgres_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but PostgreSQL is not installed: the PostgreSQL registry tests must run in CI")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql, or run .ci/run)")
    cluster = start_cluster()
    yield cluster
    remove_cluster(cluster)


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """A fresh, empty database of the session's cluster for this test alone."""
    return str(pg_cluster.create_database(f"t_{uuid.uuid4().hex[:16]}"))


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both registries: a SQLite file, and a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """CLI tests on both registries: SANDBOXCTL_DB for the `cli` subprocesses and in-process code (None: SQLite)."""
    if request.param == "sqlite":
        return None
    url = str(request.getfixturevalue("pg_url"))
    cli.env["SANDBOXCTL_DB"] = url
    monkeypatch.setenv("SANDBOXCTL_DB", url)
    return url


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the tests and the commands they start, however the suite was launched.

    A shell starts a background job (`.ci/run &`, `nohup`) with SIGINT ignored, every child inherits
    that, and Python then raises no KeyboardInterrupt: the interrupt tests would fail for a reason
    that is not theirs. A Python handler here is reset to the default in every child at exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_docker_outcomes: dict[str, int] = {"passed": 0, "skipped": 0, "failed": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "docker" in report.keywords and (report.when == "call" or report.skipped):
        _docker_outcomes[report.outcome] = _docker_outcomes.get(report.outcome, 0) + 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI the real-engine tests must have run: a skipped or absent Docker tier fails the run."""
    if not os.environ.get("CI") or session.config.option.collectonly or hasattr(session.config, "workerinput"):
        return  # under xdist the controller, which receives every worker's reports, decides
    if _docker_outcomes["skipped"] or not (_docker_outcomes["passed"] + _docker_outcomes["failed"]):
        session.config.get_terminal_writer().line(
            f"CI: real-engine (docker) tests skipped={_docker_outcomes['skipped']} "
            f"ran={_docker_outcomes['passed'] + _docker_outcomes['failed']}: they must run in CI",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
