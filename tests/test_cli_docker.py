"""Every foundation command through the installed CLI against the real Docker engine."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import SANDBOXCTL, Cli, sandbox_containers

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_cleanup")]


@pytest.fixture(scope="module")
def shared(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One sandbox for the read-only exec tests (a module-scoped container, as testcontainers does)."""
    home = tmp_path_factory.mktemp("shared-home")
    env = {**os.environ, "SANDBOXCTL_HOME": str(home), "NO_COLOR": "1"}
    cli = Cli(env)
    sandbox = cli.ok("create", "--backend", "docker", "--image", docker_image, "--name", "shared").stdout.strip()
    yield {"id": sandbox, "home": str(home)}
    cli("delete", sandbox)


@pytest.fixture
def sh(shared: dict[str, str]) -> Cli:
    env = {**os.environ, "SANDBOXCTL_HOME": shared["home"], "NO_COLOR": "1"}
    return Cli(env)


def inspect(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def test_create_labels_limits_and_keepalive(cli: Cli, docker_image: str) -> None:
    record = cli.ok(
        "create",
        "--backend",
        "docker",
        "--image",
        docker_image,
        "--label",
        "team=ml",
        "--env",
        "TOKEN=abc",
        "--cpus",
        "0.5",
        "--memory",
        "64m",
        "--ttl",
        "2h",
        "--json",
    ).json()
    [container] = sandbox_containers(record["id"])
    assert container == record["backend_id"]
    info = inspect(container)
    labels = info["Config"]["Labels"]
    assert labels["sandboxctl.id"] == record["id"] and labels["team"] == "ml"
    for key in (
        "sandboxctl.expires-at",
        "sandboxctl.registry",
        "sandboxctl.host",
        "sandboxctl.pid",
        "sandboxctl.created-at",
    ):
        assert labels.get(key), key
    assert labels["sandboxctl.expires-at"] == record["expires_at"]
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["HostConfig"]["Memory"] == 64 * 1024**2
    assert info["HostConfig"]["Init"] is True
    assert info["State"]["Running"] is True


def test_exec_propagates_exit_code(sh: Cli, shared: dict[str, str]) -> None:
    for code in (0, 1, 3, 42):
        result = sh("exec", shared["id"], "--", "sh", "-c", f"exit {code}")
        assert result.returncode == code, str(result)


def test_exec_keeps_stdout_and_stderr_apart(sh: Cli, shared: dict[str, str]) -> None:
    result = sh("exec", shared["id"], "--", "sh", "-c", "echo to-out; echo to-err >&2; echo more-out")
    assert result.returncode == 0, str(result)
    assert result.stdout == "to-out\nmore-out\n" and result.stderr == "to-err\n", str(result)


def test_exec_forwards_stdin(sh: Cli, shared: dict[str, str]) -> None:
    payload = "".join(f"line {i}\n" for i in range(2000))
    result = sh("exec", shared["id"], "--", "sh", "-c", "wc -l; ", input=payload)
    assert result.returncode == 0, str(result)
    assert result.stdout.strip() == "2000"


def test_exec_with_stdin_on_dev_null_attaches_none(sh: Cli, shared: dict[str, str]) -> None:
    """A CI step's or cron's stdin is /dev/null: the command's is too, and no stream is attached to the exec
    (attaching one gave the command a pipe, and cost every exec ~15 ms)."""
    result = sh("exec", shared["id"], "--", "readlink", "/proc/self/fd/0")  # the Cli runs with stdin on /dev/null
    assert result.returncode == 0, str(result)
    assert result.stdout == "/dev/null\n"
    piped = sh("exec", shared["id"], "--", "readlink", "/proc/self/fd/0", input="")
    assert piped.stdout.startswith("pipe:"), str(piped)  # a real stdin, even an empty one, is still forwarded


def test_exec_streams_output_live(sh: Cli, shared: dict[str, str]) -> None:
    """The second line is printed only after the test has read the first: buffered output would never arrive.

    No clock involved: a buffered exec hangs until the hang guard kills it (a generous bound, never hit).
    """
    go = f"/tmp/go-{uuid.uuid4().hex}"
    script = f"echo first; while [ ! -e {go} ]; do sleep 0.1; done; echo second"
    proc = subprocess.Popen(
        [SANDBOXCTL, "exec", shared["id"], "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**sh.env},
        text=True,
    )
    guard = threading.Timer(120, proc.kill)
    guard.start()
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == "first\n", "first line not streamed before the command went on (killed by the hang guard)"
        sh.ok("exec", shared["id"], "--", "touch", go)
        assert proc.stdout.read() == "second\n"
        assert proc.wait() == 0
    finally:
        guard.cancel()
        proc.kill()


def test_exec_timeout_is_124_and_kills_the_command(sh: Cli, shared: dict[str, str]) -> None:
    result = sh("exec", shared["id"], "--timeout", "1s", "--", "sh", "-c", "sleep 60 & sleep 61")
    assert result.returncode == 124, str(result)
    assert result.stderr.startswith("error: command timed out")
    procs = sh.ok("exec", shared["id"], "--", "ps").stdout
    assert "sleep 60" not in procs and "sleep 61" not in procs, procs


def test_exec_workdir_env_and_name(sh: Cli, shared: dict[str, str]) -> None:
    script = 'echo "$GREETING"; pwd'
    result = sh.ok("exec", "shared", "--workdir", "/tmp", "--env", "GREETING=hi", "--", "sh", "-c", script)
    assert result.stdout == "hi\n/tmp\n"


def test_unknown_sandbox_is_3(cli: Cli, docker_image: str) -> None:
    result = cli("exec", "feedbeef", "--", "true")
    assert result.returncode == 3, str(result)


def test_docker_unreachable_is_4(cli: Cli, docker_image: str, tmp_path: Path) -> None:
    dead = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    result = cli("create", "--backend", "docker", "--image", docker_image, env=dead, timeout=120)
    assert result.returncode == 4, str(result)
    assert result.stderr.startswith("error: Docker daemon unreachable") and "Traceback" not in result.stderr
    assert cli.ok("status", "--json").json() == [], "an unreachable backend must leave no record"


def test_exec_on_container_removed_behind_our_back_is_clear(cli: Cli, docker_image: str) -> None:
    sandbox = cli.ok("create", "--image", docker_image).stdout.strip()
    subprocess.run(["docker", "rm", "-f", *sandbox_containers(sandbox)], check=True, capture_output=True)
    result = cli("exec", sandbox, "--", "true")
    assert result.returncode == 1, str(result)
    assert "no longer exists" in result.stderr
    status = cli.ok("status", sandbox, "--json").json()
    assert status["backend_state"] == "gone"
    assert cli.ok("delete", sandbox).stdout.strip() == sandbox  # idempotent: already gone is deleted


def test_delete_removes_container_and_archives(cli: Cli, docker_image: str) -> None:
    sandbox = cli.ok("create", "--image", docker_image).stdout.strip()
    assert sandbox_containers(sandbox)
    outcome = cli.ok("delete", sandbox, "--json").json()[0]
    assert outcome["success"] is True and outcome["retries_used"] == 0
    assert sandbox_containers(sandbox) == []
    assert cli.ok("status", sandbox, "--json").json()["status"] == "deleted"
    assert cli.ok("delete", sandbox, "--json").json()[0]["success"] is True


def test_missing_image_fails_cleanly_and_leaves_nothing(cli: Cli, docker_engine: None) -> None:
    result = cli("create", "--image", "sandboxctl-test/does-not-exist:1")
    assert result.returncode == 1, str(result)
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, str(result)
    archived = cli.ok("status", "--all", "--json").json()
    assert [r["reason"] for r in archived] == ["create_failed"]
    assert sandbox_containers(archived[0]["id"]) == []


def test_eight_parallel_creates_lose_no_record(cli: Cli, docker_image: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: cli("create", "--image", docker_image, "--name", f"par-{i}"), range(8)))
    for result in results:
        assert result.returncode == 0, str(result)
    ids = {r.stdout.strip() for r in results}
    records = {r["id"]: r for r in cli.ok("status", "--json").json()}
    assert ids == set(records)
    assert all(records[i]["status"] == "running" for i in ids)
    for sandbox in ids:
        assert len(sandbox_containers(sandbox)) == 1
    with ThreadPoolExecutor(8) as pool:
        deletions = list(pool.map(lambda s: cli("delete", s), ids))
    assert all(d.returncode == 0 for d in deletions), [str(d) for d in deletions]


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9])
def test_sigkill_during_create_leaves_a_traceable_pair(cli: Cli, home: Path, docker_image: str, delay: float) -> None:
    """Record first, act second: whatever moment the kill lands, a record names its container
    or a container names its record (so `cleanup --orphans` can settle it)."""
    proc = subprocess.Popen(
        [SANDBOXCTL, "create", "--image", docker_image], env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = cli.ok("status", "--all", "--json").json()
    assert len(records) <= 1
    with sqlite3.connect(home / "registry.db") as conn:
        row = conn.execute("SELECT value FROM registry_meta WHERE key='registry_id'").fetchone()
    registry_filter = f"label=sandboxctl.registry={row[0] if row else 'none'}"
    ours = subprocess.run(
        ["docker", "ps", "-a", "--filter", registry_filter, "--format", '{{.Label "sandboxctl.id"}}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    known = {r["id"] for r in records}
    # Every container this registry's create made names a record the registry holds...
    assert set(ours) <= known, (ours, records)
    # ...and a record left mid-create names the host and the dead pid that made it.
    for record in records:
        if record["status"] == "creating":
            assert record["pid"] == proc.pid and record["host"]


def test_docker_context_is_honoured(cli: Cli, docker_image: str, tmp_path: Path) -> None:
    """DOCKER_CONTEXT (or config.json's currentContext) chooses the daemon, as for the docker CLI."""
    config = tmp_path / "docker-config"
    config.mkdir()
    context_env = {**cli.env, "DOCKER_CONFIG": str(config)}
    context_env.pop("DOCKER_HOST", None)
    for name, host in (("sbx-live", "unix:///var/run/docker.sock"), ("sbx-dead", f"unix://{tmp_path}/dead.sock")):
        subprocess.run(
            ["docker", "context", "create", name, "--docker", f"host={host}"],
            env=context_env,
            check=True,
            capture_output=True,
        )
    live = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "sbx-live"}
    sandbox = cli.ok("create", "--image", docker_image, env=live).stdout.strip()
    assert cli("exec", sandbox, "--", "true", env=live).returncode == 0
    dead = {"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "sbx-dead"}
    for args in (("exec", sandbox, "--", "true"), ("create", "--image", docker_image)):
        result = cli(*args, env=dead)
        assert result.returncode == 4, str(result)
        assert "dead.sock" in result.stderr, str(result)
    cli.ok("delete", sandbox, env=live)


def test_delete_with_docker_unreachable_is_4_and_keeps_the_record(cli: Cli, docker_image: str, tmp_path: Path) -> None:
    sandbox = cli.ok("create", "--image", docker_image).stdout.strip()
    result = cli("delete", sandbox, env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert result.returncode == 4, str(result)
    record = cli.ok("status", sandbox, "--json").json()
    assert record["status"] == "failed" and "unreachable" in record["last_error"]
    assert cli.ok("delete", sandbox).stdout.strip() == sandbox  # the next attempt succeeds
    assert sandbox_containers(sandbox) == []


def test_sigterm_during_exec_kills_the_command_in_the_sandbox(sh: Cli, shared: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [SANDBOXCTL, "exec", shared["id"], "--", "sh", "-c", "sleep 77"],
        env=sh.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for _ in range(50):
        if "sleep 77" in sh.ok("exec", shared["id"], "--", "ps").stdout:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    assert "sleep 77" not in sh.ok("exec", shared["id"], "--", "ps").stdout
