"""Every command through the installed CLI on the `local` backend: fast, no Docker needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SANDBOXCTL, Cli


def create(cli: Cli, *args: str) -> str:
    return cli.ok("create", "--backend", "local", *args).stdout.strip()


def test_create_prints_only_the_id(cli: Cli) -> None:
    result = cli.ok("create", "--backend", "local")
    assert len(result.stdout.strip()) == 12 and result.stdout.count("\n") == 1, str(result)


def test_create_json_record_has_contract_fields(cli: Cli) -> None:
    record = cli.ok(
        "create", "--backend", "local", "--name", "web-1", "--label", "team=ml", "--env", "TOKEN=s3cret", "--json"
    ).json()
    for field in (
        "id",
        "name",
        "backend",
        "backend_id",
        "image",
        "status",
        "policy",
        "labels",
        "created_at",
        "last_accessed",
        "expires_at",
    ):
        assert field in record
    assert record["name"] == "web-1" and record["status"] == "running" and record["labels"] == {"team": "ml"}
    assert record["env_keys"] == ["TOKEN"]
    assert record["created_at"].endswith("+00:00")


def test_exec_exit_code_streams_and_stdin(cli: Cli) -> None:
    sandbox = create(cli)
    result = cli("exec", sandbox, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7, str(result)
    assert result.stdout == "out\n" and result.stderr == "err\n", str(result)
    assert cli("exec", sandbox, "--", "cat", input="piped\n").stdout == "piped\n"


def test_exec_env_workdir_and_create_env(cli: Cli) -> None:
    sandbox = create(cli, "--env", "FROM_CREATE=1")
    cli.ok("exec", sandbox, "--", "mkdir", "sub")
    script = 'echo "$X $FROM_CREATE"; pwd'
    result = cli.ok("exec", sandbox, "--workdir", "sub", "--env", "X=42", "--", "sh", "-c", script)
    lines = result.stdout.splitlines()
    assert lines[0] == "42 1" and lines[1].endswith("/workspace/sub"), str(result)


def test_exec_timeout_is_124_and_kills_the_tree(cli: Cli, tmp_path: Path) -> None:
    sandbox = create(cli)
    marker = tmp_path / "survivor"
    result = cli("exec", sandbox, "--timeout", "1s", "--", "sh", "-c", f"(sleep 3; touch {marker}) & sleep 30")
    assert result.returncode == 124, str(result)
    assert "timed out" in result.stderr
    subprocess.run(["sleep", "3.5"])
    assert not marker.exists(), "a child of the timed-out command survived"


def test_exec_accepts_name_and_unique_prefix(cli: Cli) -> None:
    sandbox = create(cli, "--name", "alpha")
    assert cli("exec", "alpha", "--", "true").returncode == 0
    assert cli("exec", sandbox[:6], "--", "true").returncode == 0


def test_unknown_sandbox_is_exit_3(cli: Cli) -> None:
    for args in (("exec", "nope", "--", "true"), ("status", "nope"), ("delete", "nope")):
        result = cli(*args)
        assert result.returncode == 3, str(result)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("create", "--backend", "local", "--ttl", "5"),
        ("create", "--backend", "local", "--ttl", "-5m"),
        ("create", "--backend", "local", "--idle-timeout", "1y"),
        ("create", "--backend", "local", "--label", "novalue"),
        ("create", "--backend", "local", "--label", "sandboxctl.id=x"),
        ("create", "--backend", "nosuch"),
        ("create", "--backend", "local", "--policy", "forever"),
        ("create", "--backend", "local", "--name", "bad name"),
        ("create", "--backend", "local", "--memory", "lots"),
        ("status", "--label", "=x"),
        ("create", "--no-such-flag"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, str(result)
    assert result.stdout == ""


def test_name_must_be_unique(cli: Cli) -> None:
    create(cli, "--name", "dup")
    result = cli("create", "--backend", "local", "--name", "dup")
    assert result.returncode == 2, str(result)
    assert "already exists" in result.stderr


def test_status_list_filters_and_all(cli: Cli) -> None:
    a = create(cli, "--label", "team=a")
    b = create(cli, "--label", "team=b")
    listed = {r["id"] for r in cli.ok("status", "--json").json()}
    assert {a, b} <= listed
    assert [r["id"] for r in cli.ok("status", "--label", "team=a", "--json").json()] == [a]
    cli.ok("delete", a)
    assert a not in {r["id"] for r in cli.ok("status", "--json").json()}
    archived = {r["id"]: r for r in cli.ok("status", "--all", "--json").json()}
    assert archived[a]["status"] == "deleted"
    table = cli.ok("status").stdout
    assert b in table and "STATUS" in table


def test_status_one_has_backend_state(cli: Cli) -> None:
    sandbox = create(cli)
    record = cli.ok("status", sandbox, "--json").json()
    assert record["id"] == sandbox and record["backend_state"] == "running"


def test_delete_is_idempotent_and_archives(cli: Cli, home: Path) -> None:
    sandbox = create(cli)
    sandbox_dir = home / "local" / sandbox
    assert sandbox_dir.is_dir()
    first = cli.ok("delete", sandbox, "--json").json()
    assert first[0]["sandbox_id"] == sandbox and first[0]["success"] is True
    assert not sandbox_dir.exists()
    again = cli.ok("delete", sandbox, "--json").json()
    assert again[0]["success"] is True and again[0]["message"] == "already deleted"
    record = cli.ok("status", sandbox, "--json").json()
    assert record["status"] == "deleted" and record["reason"] == "deleted"


def test_delete_with_one_unknown_deletes_nothing(cli: Cli) -> None:
    sandbox = create(cli)
    result = cli("delete", sandbox, "nope")
    assert result.returncode == 3, str(result)
    assert cli.ok("status", sandbox, "--json").json()["status"] == "running"


def test_exec_updates_last_accessed(cli: Cli) -> None:
    sandbox = create(cli)
    before = cli.ok("status", sandbox, "--json").json()["last_accessed"]
    subprocess.run(["sleep", "1.1"])
    cli.ok("exec", sandbox, "--", "true")
    after = cli.ok("status", sandbox, "--json").json()["last_accessed"]
    assert after > before


def test_env_values_never_stored_in_registry_or_output(cli: Cli, home: Path) -> None:
    secret = "s3cr3t-value-4242"
    out = cli.ok("create", "--backend", "local", "--env", f"API_TOKEN={secret}", "--json")
    sandbox = out.json()["id"]
    runs = [out, cli.ok("status", sandbox, "--json"), cli.ok("status", "--all", "--json"), cli.ok("status")]
    for run in runs:
        assert secret not in run.stdout + run.stderr
    for name in ("registry.db", "registry.db-wal"):
        path = home / name
        if path.exists():
            assert secret.encode() not in path.read_bytes()


def test_version_and_help_do_not_import_heavy_sdks(home: Path) -> None:
    code = (
        "import sys; sys.argv=['sandboxctl','--help']\n"
        "from sandboxctl.cli import run\n"
        "run()\n"
        "bad=[m for m in ('docker','sqlalchemy','sqlmodel','daytona') if m in sys.modules]\n"
        "sys.stderr.write(repr(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert proc.stderr.strip() == "[]", proc.stderr
    version = subprocess.run([SANDBOXCTL, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("sandboxctl ")


def test_python_dash_m_works(cli: Cli) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sandboxctl", "--version"], capture_output=True, text=True, env=cli.env
    )
    assert proc.returncode == 0 and proc.stdout.startswith("sandboxctl "), proc.stderr


def test_json_stdout_is_exactly_one_document(cli: Cli) -> None:
    create(cli)
    for args in (("status", "--json"), ("config", "show", "--json")):
        json.loads(cli.ok(*args).stdout)
