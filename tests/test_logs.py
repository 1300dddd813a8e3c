"""Structured logs: `--log-format json` / SANDBOXCTL_LOG_FORMAT=json, one JSON object per lifecycle event."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sandboxctl import logs
from sandboxctl.services.events import Redactor
from tests.conftest import Cli

FIELDS = {"ts", "level", "event", "sandbox_id", "user", "backend", "duration_seconds"}


def events(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line must be one JSON object carrying the fixed fields."""
    parsed = [json.loads(line) for line in stderr.splitlines()]
    for event in parsed:
        assert set(event) >= FIELDS, event
    return parsed


def test_json_logs_cover_create_exec_delete_with_the_fixed_fields(cli: Cli) -> None:
    env = {"SANDBOXCTL_USER": "ci-bot"}
    created = cli.ok("--log-format", "json", "create", "--backend", "local", "-e", "SECRET=hunter2hunter2", env=env)
    sandbox = created.stdout.strip()
    [event] = events(created.stderr)
    assert (event["event"], event["sandbox_id"], event["user"], event["backend"]) == (
        "created",
        sandbox,
        "ci-bot",
        "local",
    )
    assert event["level"] == "info" and event["duration_seconds"] >= 0
    ran = cli("--log-format=json", "exec", sandbox, "-e", "TOKEN=abcdefgh12", "--", "sh", "-c", "exit 3", env=env)
    assert ran.returncode == 3, str(ran)
    started, ended = events(ran.stderr)
    assert (started["event"], ended["event"], ended["exit_code"]) == ("exec_started", "exec_ended", 3)
    deleted = cli.ok("delete", sandbox, env={**env, "SANDBOXCTL_LOG_FORMAT": "json"})
    assert [(e["event"], e["sandbox_id"]) for e in events(deleted.stderr)] == [("deleted", sandbox)]
    everything = created.stderr + ran.stderr + deleted.stderr
    assert "hunter2hunter2" not in everything and "abcdefgh12" not in everything


def test_default_output_is_unchanged_by_logging(cli: Cli) -> None:
    created = cli.ok("create", "--backend", "local")
    assert created.stderr == ""
    ran = cli.ok("exec", created.stdout.strip(), "--", "true")
    assert ran.stderr == "" and ran.stdout == ""
    assert cli.ok("delete", created.stdout.strip()).stderr == ""


def test_quota_refusal_and_cleanup_are_logged(cli: Cli) -> None:
    expired = cli.ok("create", "--backend", "local", "--ttl", "0s").stdout.strip()
    refused = cli("--log-format", "json", "create", "--backend", "local", env={"SANDBOXCTL_QUOTA_MAX_LIVE": "1"})
    assert refused.returncode == 5, str(refused)
    log_line, error_line = refused.stderr.splitlines()
    failed = json.loads(log_line)
    assert (failed["event"], failed["level"], failed["action"], failed["sandbox_id"]) == (
        "failed",
        "error",
        "create",
        None,
    )
    assert failed["error"].startswith("quota.max_live is 1") and error_line.startswith("error: quota.max_live")
    cleaned = cli.ok("--log-format", "json", "cleanup")
    json_lines = [line for line in cleaned.stderr.splitlines() if line.startswith("{")]
    [event] = events("\n".join(json_lines))
    assert (event["event"], event["sandbox_id"], event["reason"]) == ("cleaned", expired, "expired")


def test_agent_run_through_typer_logs_created_and_kept(cli: Cli) -> None:
    run = cli("--log-format", "json", "agent-run", "--backend", "local", "--keep", "always", "--json", "--", "true")
    assert run.returncode == 0, str(run)
    logged = [json.loads(line) for line in run.stderr.splitlines() if line.startswith('{"ts"')]
    assert [e["event"] for e in logged] == ["created", "kept"], run.stderr
    assert logged[1]["sandbox_id"] == logged[0]["sandbox_id"] == run.json()["sandbox_id"]


def test_bad_log_format_is_a_usage_error_creating_nothing(cli: Cli) -> None:
    for argv in (["--log-format", "yaml", "create", "--backend", "local"], ["--log-format", "yaml", "cleanup"]):
        result = cli(*argv)
        assert result.returncode == 2 and result.stderr.startswith("error: "), str(result)
    assert cli.ok("status", "--all", "--json").json() == []


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """JSON logging switched on in this process (into a buffer), and off again after."""
    stream = io.StringIO()
    logs.configure("json", secrets=("dtn_apikey_0123456789",), stream=stream)
    yield stream
    logger = logging.getLogger(logs.LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logs._state.update(enabled=False, secrets=())


def test_errors_are_redacted_of_env_values_and_api_keys(json_logs: io.StringIO) -> None:
    # What a sandbox or an SDK sends back may echo a secret: the log line must not carry it.
    hostile = 'pull failed: {"env": {"TOKEN": "s3cr3t-value"}, "auth": "dtn_apikey_0123456789"}'
    logs.log_event(
        "failed", action="create", sandbox_id="abc", backend="daytona", error=hostile, redact=Redactor(["s3cr3t-value"])
    )
    line = json_logs.getvalue()
    assert "s3cr3t-value" not in line and "dtn_apikey_0123456789" not in line
    assert json.loads(line)["error"] == 'pull failed: {"env": {"TOKEN": "***"}, "auth": "***"}'


def test_exec_fast_path_imports_logging_only_when_json_logs_are_on(cli: Cli) -> None:
    sandbox = cli.ok("create", "--backend", "local").stdout.strip()
    code = (
        "import sys\n"
        f"sys.argv = ['sandboxctl', *sys.argv[1:], 'exec', {sandbox!r}, '--', 'true']\n"
        "from sandboxctl.cli import run\n"
        "code = run()\n"
        "sys.stdout.write(repr((code, 'logging' in sys.modules)))\n"
    )
    for root, expected in (((), "(0, False)"), (("--log-format", "json"), "(0, True)")):
        proc = subprocess.run(
            [sys.executable, "-c", code, *root], capture_output=True, text=True, env=cli.env, timeout=120
        )
        assert proc.stdout == expected, proc.stderr
