"""Issue 9.11: `--env KEY` and `--env-file FILE` keep secrets off the command line, on create, exec and agent-run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sandboxctl.envvars import collect_env
from sandboxctl.errors import UsageError

from .conftest import Cli

SECRET = "s3cr3t-value-4242"
FILE_SECRET = "file-secret-9191"
CHECK = 'test "$FROM_ENV" = s3cr3t-value-4242 && test "$FROM_FILE" = "file-secret-9191 # literal" && test "$P" = a=b'


def _env_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text(f"# a comment\n\nFROM_FILE={FILE_SECRET} # literal\nP=a=b\nFROM_ENV=overridden-by-env\n")
    return path


def _assert_nowhere(home: Path, *outputs: str) -> None:
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and FILE_SECRET.encode() not in data, path
    for text in outputs:
        assert SECRET not in text and FILE_SECRET not in text


@pytest.mark.parametrize("typer_path", [False, True], ids=["fast-parser", "typer"])
def test_exec_env_key_and_env_file_reach_the_command_and_nothing_else(
    cli: Cli, home: Path, tmp_path: Path, typer_path: bool
) -> None:
    sandbox = cli.ok("create", "--backend", "local").stdout.strip()
    env_file = str(_env_file(tmp_path))
    flags = ["--env", "FROM_ENV", "--env-file", env_file]
    # An option before SANDBOX is outside the fast grammar: Typer parses it.
    args = ["exec", *flags, sandbox] if typer_path else ["exec", sandbox, *flags]
    result = cli(*args, "--", "sh", "-c", CHECK, env={"FROM_ENV": SECRET})
    assert result.returncode == 0, str(result)
    _assert_nowhere(home, result.stdout, result.stderr)


@pytest.mark.parametrize("typer_path", [False, True], ids=["fast-parser", "typer"])
def test_exec_env_mistakes_are_usage_errors_without_the_value(cli: Cli, tmp_path: Path, typer_path: bool) -> None:
    sandbox = cli.ok("create", "--backend", "local").stdout.strip()
    bad = tmp_path / "bad.env"
    bad.write_text(f"GOOD=1\n{SECRET} no equals sign\n")
    cases = [
        (["--env", "UNSET_SECRET_VAR"], "UNSET_SECRET_VAR is not set"),
        (["--env-file", str(bad)], f"{bad}:2"),
        (["--env-file", str(tmp_path / "missing.env")], "cannot read --env-file"),
    ]
    for flags, expected in cases:
        args = ["exec", *flags, sandbox] if typer_path else ["exec", sandbox, *flags]
        result = cli(*args, "--", "sh", "-c", "echo ran")
        assert result.returncode == 2, str(result)
        assert result.stderr.startswith("error: ") and expected in result.stderr, str(result)
        assert result.stderr.count("\n") == 1 and "ran" not in result.stdout
        assert SECRET not in result.stderr


def test_create_env_key_and_file_live_in_the_sandbox_not_the_registry(cli: Cli, home: Path, tmp_path: Path) -> None:
    env_file = str(_env_file(tmp_path))
    created = cli("create", "--backend", "local", "--env", "FROM_ENV", "--env-file", env_file, env={"FROM_ENV": SECRET})
    assert created.returncode == 0, str(created)
    record = cli.ok("status", created.stdout.strip(), "--json").json()
    assert record["env_keys"] == ["FROM_ENV", "FROM_FILE", "P"]
    cli.ok("exec", created.stdout.strip(), "--", "sh", "-c", CHECK)
    registry = home / "registry.db"
    assert registry.is_file()
    assert SECRET.encode() not in registry.read_bytes() and FILE_SECRET.encode() not in registry.read_bytes()


def test_create_with_a_missing_env_key_creates_nothing(cli: Cli) -> None:
    result = cli("create", "--backend", "local", "--env", "NOT_SET_ANYWHERE_4242")
    assert result.returncode == 2, str(result)
    assert cli.ok("status", "--all", "--json").json() == []


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_docker_create_env_file_is_in_the_container_config_only(
    cli: Cli, home: Path, tmp_path: Path, docker_image: str
) -> None:
    env_file = str(_env_file(tmp_path))
    args = ["create", "--backend", "docker", "--image", docker_image, "--env", "FROM_ENV", "--env-file", env_file]
    created = cli(*args, env={"FROM_ENV": SECRET})
    assert created.returncode == 0, str(created)
    sandbox = created.stdout.strip()
    cli.ok("exec", sandbox, "--", "sh", "-c", CHECK)
    inspect = subprocess.run(
        ["docker", "inspect", f"sandboxctl-{sandbox}"], capture_output=True, text=True, check=True
    ).stdout
    assert f"FROM_ENV={SECRET}" in json.loads(inspect)[0]["Config"]["Env"]  # documented: docker inspect shows it
    assert SECRET.encode() not in (home / "registry.db").read_bytes()


def test_collect_env_order_and_literal_values(tmp_path: Path) -> None:
    path = _env_file(tmp_path)
    env = collect_env(["FROM_ENV", "X=1"], [str(path)], environ={"FROM_ENV": SECRET})
    assert env == {"FROM_FILE": f"{FILE_SECRET} # literal", "P": "a=b", "FROM_ENV": SECRET, "X": "1"}
    with pytest.raises(UsageError) as info:
        collect_env([f"1BAD={SECRET}"])
    assert SECRET not in str(info.value)
