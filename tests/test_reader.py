"""One lookup rule for every command, and parity between the SQLModel-free reader and the full registry.

References are driven through every command taking SANDBOX (and RUN_ID); the reader and the full
registry are driven with the same references, rows, timestamps and schema, and must agree.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite as sqlite_dialect

from sandboxctl.cli import render
from sandboxctl.config import Settings
from sandboxctl.errors import SandboxctlError
from sandboxctl.registry.models import AgentRun, ArchivedSandbox, SandboxRecord
from sandboxctl.registry.reader import (
    ARCHIVE_COLUMNS,
    DATETIME_COLUMNS,
    JSON_COLUMNS,
    SANDBOX_COLUMNS,
    SCHEMA_VERSION,
    SQLITE_DATETIME,
    RegistryReader,
    to_sqlite_datetime,
)
from sandboxctl.registry.store import MIGRATIONS, Registry
from sandboxctl.services.context import Context

from .conftest import SANDBOXCTL, Cli, Result

FIXTURES = Path(__file__).parent / "fixtures"

# Three local sandboxes re-keyed as an old registry could hold them: C is *named* A's id (today's
# create refuses such a name), A and B share the prefix `aaaa`.
A, B, C = "aaaa00000001", "aaaa00000002", "bbbb00000003"
# reference -> the id it must resolve to, or the exit code it must give (2 ambiguous, 3 unknown)
REFERENCES: dict[str, str | int] = {
    A: A,  # exact id beats C's name
    "named-b": B,  # exact name
    "bbbb": C,  # unique prefix
    "aaaa": 2,  # ambiguous prefix
    "cccc": 3,  # unknown
    "AAAA0000000": 3,  # prefixes are case-sensitive (SQLite's LIKE is not; PostgreSQL's is)
    "": 3,
}


def _rekeyed_registry(cli: Cli, home: Path) -> dict[str, str]:
    """Make A, B, C on `local`; returns backend_id -> id (exec's `pwd` shows the backend id)."""
    made = [cli.ok("create", "--backend", "local", "--name", name).stdout.strip() for name in ("a", "named-b", "c")]
    with sqlite3.connect(home / "registry.db") as conn:
        for old, new, name in zip(made, (A, B, C), ("a", "named-b", A), strict=True):
            conn.execute("UPDATE sandbox SET id = ?, name = ? WHERE id = ?", (new, name, old))
    return dict(zip(made, (A, B, C), strict=True))


def test_every_command_resolves_references_by_the_one_rule(cli: Cli, home: Path) -> None:
    by_backend_id = _rekeyed_registry(cli, home)
    for ref, expected in REFERENCES.items():
        status = cli("status", ref, "--json")
        execd = cli("exec", ref, "--", "pwd")
        planned = cli("cleanup", "--dry-run", "--json", ref)
        if isinstance(expected, int):
            for result in (status, execd, planned):
                assert result.returncode == expected, str(result)
                assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, str(result)
            deleted = cli("delete", ref)
            assert deleted.returncode == expected, str(deleted)
            continue
        assert status.returncode == 0 and status.json()["id"] == expected, str(status)
        assert execd.returncode == 0, str(execd)
        assert by_backend_id[Path(execd.stdout.strip()).parent.name] == expected, str(execd)
        assert planned.returncode == 0, str(planned)
        assert [s["sandbox_id"] for s in planned.json()["sandboxes"]] == [expected], str(planned)
    # Nothing was deleted by the refused references; now delete by A's id: A goes, C (named A's id) stays.
    assert sorted(r["id"] for r in cli.ok("status", "--json").json()) == [A, B, C]
    assert cli.ok("delete", A, "--json").json()[0]["sandbox_id"] == A
    assert sorted(r["id"] for r in cli.ok("status", "--json").json()) == [B, C]
    # An archived sandbox is still found by its id (delete is idempotent, exec says it was deleted).
    assert cli.ok("status", A, "--json").json()["status"] == "deleted"
    gone = cli("exec", A, "--", "true")
    assert gone.returncode == 1 and "was deleted" in gone.stderr, str(gone)


def test_agent_commands_resolve_run_ids_by_the_same_rule(cli: Cli, home: Path) -> None:
    cli.ok("status")
    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    for run_id in (A, B, C):
        registry.insert_run(
            AgentRun(
                id=run_id,
                status="succeeded",
                backend="local",
                keep="never",
                timeout_seconds=60,
                output_dir=str(home),
                host="elsewhere",
                pid=1,
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
    assert cli.ok("agent", "show", A, "--json").json()["run_id"] == A
    assert cli.ok("agent", "show", "bbbb", "--json").json()["run_id"] == C
    assert cli("agent", "show", "aaaa").returncode == 2
    assert cli("agent", "show", "AAAA").returncode == 3
    assert cli("agent", "send", "cccc", "hello").returncode == 3


@pytest.mark.parametrize("name", ["0123456789ab", "DEADBEEFCAFE"])
def test_create_refuses_a_name_that_looks_like_an_id(cli: Cli, home: Path, name: str) -> None:
    cli.ok("create", "--backend", "local", "--name", "first")
    result = cli("create", "--backend", "local", "--name", name)
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: invalid name") and result.stderr.count("\n") == 1, str(result)
    assert [r["name"] for r in cli.ok("status", "--all", "--json").json()] == ["first"]
    assert len(list((home / "local").iterdir())) == 1


def test_create_refuses_a_taken_name_before_anything_is_made(cli: Cli, home: Path) -> None:
    cli.ok("create", "--backend", "local", "--name", "taken")
    result = cli("create", "--backend", "local", "--name", "taken")
    assert result.returncode == 2 and "already exists" in result.stderr, str(result)
    assert len(cli.ok("status", "--all", "--json").json()) == 1
    assert len(list((home / "local").iterdir())) == 1


# -- parity: reader vs full registry ------------------------------------------------------
def _contexts(home: Path) -> tuple[Context, RegistryReader]:
    ctx = Context(settings=Settings.load())
    ctx.registry  # noqa: B018 - creates and migrates the registry file
    reader = RegistryReader.open(home / "registry.db")
    assert reader is not None
    return ctx, reader


def test_reader_and_registry_resolve_every_reference_alike(cli: Cli, home: Path) -> None:
    _rekeyed_registry(cli, home)
    cli.ok("delete", "named-b")  # an archived one too
    cli.ok("create", "--backend", "local", "--name", "named-b")  # and a live one reusing its name
    ctx, reader = _contexts(home)
    refs = [*REFERENCES, B, "aaaa0000000", "named-b", "c", "bbbb00000003", "b", "%", "_", "a%"]
    for ref in refs:
        try:
            full = ctx.registry.resolve(ref)
        except SandboxctlError as exc:
            with pytest.raises(type(exc)) as fast_error:
                reader.resolve(ref)
            assert str(fast_error.value) == str(exc)
            continue
        fast = reader.resolve(ref)
        assert fast.archived == isinstance(full, ArchivedSandbox), ref
        assert fast.to_json() == full.to_json(), ref


def test_reader_rows_and_json_match_the_full_registry(cli: Cli, home: Path) -> None:
    for team in ("a", "b", "a"):
        cli.ok("create", "--backend", "local", "--label", f"team={team}", "--env", "TOKEN=x", "--idle-timeout", "1h")
    first = cli.ok("status", "--json").json()[0]["id"]
    cli.ok("delete", first)
    ctx, reader = _contexts(home)
    for archived in (False, True):
        full = [dict(row) for row in ctx.registry.list_rows(archived=archived)]
        fast = list(reader.iter_rows(archived=archived))
        assert [r["id"] for r in fast] == [r["id"] for r in full]
        for fast_row, full_row in zip(fast, full, strict=True):
            assert set(fast_row) == set(full_row)
            for key, value in full_row.items():
                assert fast_row[key] == value, key


def test_status_lists_the_same_json_through_the_reader_as_through_sqlmodel(cli: Cli, home: Path) -> None:
    from sandboxctl.services.listing import iter_sandboxes

    for team in ("a", "b"):
        cli.ok("create", "--backend", "local", "--label", f"team={team}", "--ttl", "1h", "--idle-timeout", "5m")
    cli.ok("create", "--backend", "local", "--policy", "permanent")
    cli.ok("delete", cli.ok("status", "--json").json()[0]["id"])
    ctx, _ = _contexts(home)
    full = Context(settings=Settings.load(), _reader_checked=True)  # no reader: SQLModel only
    for selector in (None, {"team": "b"}):
        fast_rows = list(iter_sandboxes(ctx, include_archived=True, selector=selector))
        full_rows = list(iter_sandboxes(full, include_archived=True, selector=selector))
        assert fast_rows == full_rows and fast_rows


def test_streamed_json_array_is_one_array_with_one_element_per_line() -> None:
    for documents in ([], [{"a": 1}], [{"a": [1, {"b": None}], "c": "x\ny"}, {"d": {}}]):
        whole, streamed = io.StringIO(), io.StringIO()
        with redirect_stdout(whole):
            render.emit_json(documents)
        with redirect_stdout(streamed):
            render.emit_json_array(iter(documents))
        assert json.loads(streamed.getvalue()) == json.loads(whole.getvalue()) == documents
        assert streamed.getvalue().count("\n") == len(documents) + (2 if documents else 1)


def test_sqlite_datetime_format_is_sqlalchemys() -> None:
    """Derived from SQLAlchemy itself: the text the tables' own datetime type writes on SQLite is the reader's."""
    dialect = sqlite_dialect.dialect()
    column_type = SandboxRecord.__table__.c.created_at.type  # type: ignore[attr-defined]
    bind = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    for moment in (
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, tzinfo=UTC),
    ):
        assert to_sqlite_datetime(moment) == bind(moment) == moment.strftime(SQLITE_DATETIME)
        east = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))  # stored as UTC, both ways
        assert to_sqlite_datetime(east) == bind(east)


def test_reader_touch_reads_back_through_the_full_registry(cli: Cli, home: Path) -> None:
    sandbox = cli.ok("create", "--backend", "local").stdout.strip()
    ctx, reader = _contexts(home)
    moment = datetime(2027, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    assert reader.touch(sandbox, moment)
    record = ctx.registry.get(sandbox)
    assert record is not None and record.last_accessed.replace(tzinfo=UTC) == moment
    ctx.registry.touch(sandbox, moment + timedelta(seconds=1))
    assert reader.resolve(sandbox).values["last_accessed"] == moment + timedelta(seconds=1)


def test_reader_columns_are_the_sqlmodel_tables() -> None:
    for model, columns in ((SandboxRecord, SANDBOX_COLUMNS), (ArchivedSandbox, ARCHIVE_COLUMNS)):
        table = model.__table__  # type: ignore[attr-defined]
        assert tuple(c.name for c in table.columns) == columns
        assert {c.name for c in table.columns if c.type.__class__.__name__ == "JSON"} == JSON_COLUMNS & set(columns)
        dates = {c.name for c in table.columns if isinstance(getattr(c.type, "impl", c.type), DateTime)}
        assert dates == DATETIME_COLUMNS & set(columns)
    assert len(MIGRATIONS) == SCHEMA_VERSION


def test_exec_grammar_is_the_same_on_the_fast_path_and_in_typer() -> None:
    """Every argv the fast parser accepts, Typer parses to the same values."""
    import typer.main

    from sandboxctl.cli.app import app
    from sandboxctl.cli.exec_fast import parse_fast

    command = typer.main.get_command(app)
    argvs = [
        ["exec", "sb1", "--", "true"],
        ["exec", "sb1", "--timeout", "5s", "--workdir=/tmp", "-e", "A=1", "--env", "B=2", "--", "sh", "-c", "echo -t"],
        ["exec", "sb1", "--timeout=1m", "-w", "/x", "--", "--", "-e"],
        ["--db", "x.db", "exec", "sb1", "-e", "A=b=c", "--", "env"],
        ["--debug", "exec", "aaaa", "--env=K=V", "--", "ls", "-la"],
        ["--log-format", "json", "--db", "y.db", "exec", "sb1", "--", "true"],
    ]
    for argv in argvs:
        fast = parse_fast(argv)
        assert fast is not None, argv
        root_args = argv[: argv.index("exec")]
        root = command.make_context("sandboxctl", [*root_args, "status"], resilient_parsing=True)
        exec_command = command.commands["exec"]  # type: ignore[attr-defined]
        params = exec_command.make_context("exec", argv[argv.index("exec") + 1 :], parent=root).params
        assert (root.params["db"], params["sandbox"], params["command"]) == (fast.db, fast.sandbox, fast.command)
        assert root.params["log_format"] == fast.log_format
        assert (params["timeout"], params["workdir"], params["env"] or []) == (fast.timeout, fast.workdir, fast.env)


# -- old registries, corrupt and read-only ones -----------------------------------------
@pytest.mark.parametrize("with_agent_runs", [True, False], ids=["released", "m002-placeholder"])
def test_a_registry_made_by_the_released_version_opens_and_upgrades(
    cli: Cli, home: Path, with_agent_runs: bool
) -> None:
    home.mkdir(mode=0o700)
    script = (FIXTURES / "registry_v3.sql").read_text()
    if not with_agent_runs:  # migrated while m002 was a placeholder: no agent_runs table
        script = re.sub(
            r"CREATE TABLE agent_runs \(.*?\);|CREATE INDEX ix_agent_runs\w* ON agent_runs[^;]*;",
            "",
            script,
            flags=re.S,
        )
    with sqlite3.connect(home / "registry.db") as conn:
        conn.executescript(script)
        conn.execute(
            "INSERT INTO sandbox VALUES ('0123456789ab', 'old', 'local', '0123456789ab', NULL, 'running', 'default', "
            "'{}', '[]', NULL, NULL, '2026-11-20 10:00:00.000000', '2026-11-20 10:00:00.000000', NULL, NULL, 'h', 1, "
            "0, NULL, '2026-11-20 10:00:00.000000')"
        )
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert ("agent_runs" in tables) == with_agent_runs
    assert [r["name"] for r in cli.ok("status", "--json").json()] == ["old"]
    assert cli.ok("agent", "list", "--json").json() == []
    with sqlite3.connect(home / "registry.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        applied = [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
        assert conn.execute("SELECT count(*) FROM agent_runs").fetchone()[0] == 0
    assert applied == [name for name, _ in MIGRATIONS]
    assert cli.ok("status", "0123", "--json").json()["created_at"] == "2026-11-20T10:00:00+00:00"


COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["status", "x"],
    ["exec", "x", "--", "true"],
    ["delete", "x"],
    ["create", "--backend", "local"],
    ["cleanup", "--dry-run"],
    ["agent", "list"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_corrupt_registry_is_one_line_naming_the_file(cli: Cli, home: Path, args: list[str]) -> None:
    home.mkdir(mode=0o700)
    db = home / "registry.db"
    db.write_bytes(b"this is not a database, just junk " * 200)
    result = cli(*args)
    assert result.returncode == 2, str(result)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: registry {db} is not"), str(result)
    assert "sqlite://" not in result.stderr and "unexpected" not in result.stderr, str(result)
    assert "move it aside" in result.stderr
    assert not (home / "local").exists()


class _ReadOnlyCli(Cli):
    """Runs the CLI with `home` bind-mounted read-only in a private mount namespace (root ignores modes)."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        super().__init__(env)
        self.home = home

    def __call__(self, *args: str, **kwargs: Any) -> Result:
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        proc = subprocess.run(
            ["unshare", "--mount", "sh", "-c", script, str(self.home), SANDBOXCTL, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        return Result(list(args), proc.returncode, proc.stdout, proc.stderr)


def _read_only_cli(cli: Cli, home: Path) -> Cli:
    """A CLI that sees `home` read-only: by modes for a normal user, by a read-only mount for root."""
    if os.geteuid() != 0:
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return cli
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root without mount namespaces: cannot make a home read-only here")
    return _ReadOnlyCli(cli.env, home)


def test_a_read_only_home_serves_reads_and_refuses_writes_in_one_line(cli: Cli, home: Path) -> None:
    sandbox = cli.ok("create", "--backend", "local", "--name", "ro").stdout.strip()
    ro = _read_only_cli(cli, home)
    assert [r["id"] for r in ro.ok("status", "--json").json()] == [sandbox]
    assert sandbox in ro.ok("status").stdout
    assert ro.ok("status", "ro", "--json").json()["id"] == sandbox
    assert ro.ok("cleanup", "--dry-run", "--json").json()["dry_run"] is True
    assert "backend" in ro.ok("config", "show", "--json").json()
    for args in (["create", "--backend", "local"], ["delete", sandbox]):
        result = ro(*args)
        assert result.returncode == 2, str(result)
        assert result.stderr.count("\n") == 1 and "is read-only" in result.stderr, str(result)
        assert "unexpected" not in result.stderr
    assert [r["id"] for r in ro.ok("status", "--json").json()] == [sandbox]
    assert json.loads(ro.ok("status", "--all", "--json").stdout)[0]["status"] == "running"


def test_fast_writes_store_exactly_what_the_full_registry_stores(tmp_path: Path) -> None:
    """delete's claim, failure and archive through the reader and through SQLModel: byte-identical rows."""
    from sandboxctl.registry.states import SandboxStatus

    t0 = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    raw: list[dict[str, list[tuple[object, ...]]]] = []
    for fast in (True, False):
        db = tmp_path / ("fast" if fast else "full") / "registry.db"
        registry = Registry(f"sqlite:///{db}")
        for sandbox_id in ("aaaa00000001", "aaaa00000002"):
            registry.insert(
                SandboxRecord(
                    id=sandbox_id,
                    name=f"n-{sandbox_id}",
                    backend="local",
                    labels={"k": "v", "ü": "✓"},
                    env_keys=["TOKEN"],
                    cpus=1.5,
                    created_at=t0,
                    last_accessed=t0,
                    expires_at=t0 + timedelta(hours=1),
                    host="h",
                    pid=1,
                    status_changed_at=t0,
                )
            )
        writer = RegistryReader.open(db) if fast else registry
        assert writer is not None
        steps = [
            writer.set_status("aaaa00000001", SandboxStatus.RUNNING, now=t0, expect=[SandboxStatus.CREATING]),
            writer.set_status("aaaa00000001", SandboxStatus.DELETING, now=t0 + timedelta(seconds=1)),
            writer.set_status("aaaa00000001", SandboxStatus.CREATING, now=t0),  # illegal: refused
            writer.set_status(
                "aaaa00000001", SandboxStatus.FAILED, now=t0 + timedelta(seconds=2), delete_attempts=1, last_error="é"
            ),
            writer.set_status("aaaa00000002", SandboxStatus.DELETING, now=t0 + timedelta(seconds=3)),
        ]
        assert steps == [True, True, False, True, True]
        archived = writer.archive(
            "aaaa00000002", reason="deleted", deletion={"success": True, "freed_bytes": 12}, now=t0
        )
        assert bool(archived)
        with sqlite3.connect(db) as conn:
            raw.append(
                {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("sandbox", "sandbox_archive")}
            )
    assert raw[0] == raw[1]
    assert [row[0] for row in raw[0]["sandbox_archive"]] == ["aaaa00000002"]


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--json"],
        ["status", "abc", "--json"],
        ["status", "-a", "--backend", "local", "-l", "a=b", "--label=c=d=e", "--json"],
        ["status", "--backend=docker", "--all"],
        ["status", "--state", "running", "-s", "failed", "--expired", "-q", "--sort", "-name"],
        ["status", "--sort=expires", "--quiet", "--state=expired", "-a"],
        ["status", "--user", "alice", "--json"],
        ["--log-format", "json", "status", "--json"],
        ["--db", "x.db", "--log-format=text", "delete", "a"],
        ["status", "-u", "bob", "--user=carol", "-a"],
        ["--db", "x.db", "--debug", "status", "-b", "local"],
        ["delete", "a"],
        ["delete", "a", "b", "--json", "c"],
        ["--db", "y.db", "delete", "--json", "x"],
        ["create"],
        ["create", "-b", "local", "--name", "n", "--ttl", "1h", "--idle-timeout=5m", "--policy", "extended"],
        ["create", "-i", "img", "-l", "a=b", "--label", "c=d", "-e", "A=1", "--env=B", "--cpus", "1.5", "--json"],
        ["create", "--memory", "512m", "-n", "x", "--policy=permanent", "--cpus=2"],
    ],
)
def test_status_and_delete_grammar_is_the_same_on_the_fast_path_and_in_typer(argv: list[str]) -> None:
    import typer.main

    from sandboxctl.cli.app import app
    from sandboxctl.cli.fast import parse_fast

    fast = parse_fast(argv)
    assert fast is not None, argv
    command = typer.main.get_command(app)
    at = argv.index(fast.command)
    root = command.make_context("sandboxctl", [*argv[:at], "status"], resilient_parsing=True)
    params = command.commands[fast.command].make_context(fast.command, argv[at + 1 :], parent=root).params  # type: ignore[attr-defined]
    assert root.params["db"] == fast.db
    assert root.params["log_format"] == fast.log_format
    positional = params.pop({"status": "sandbox", "delete": "sandboxes"}.get(fast.command, ""), None)
    assert ([] if positional is None else [positional] if isinstance(positional, str) else list(positional)) == list(
        fast.args
    )
    for repeated in ("label", "env", "env_file", "state"):
        if repeated in params:
            params[repeated] = params[repeated] or []
    if "policy" in params:
        params["policy"] = params["policy"].value
    assert params == fast.params


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--help"],
        ["status", "a", "b"],
        ["status", "--bogus"],
        ["delete"],
        ["delete", "--", "x"],
        ["status", "-b"],
        ["create", "x"],
        ["create", "--policy", "bogus"],
        ["create", "--cpus", "lots"],
        ["create", "--help"],
    ],
)
def test_the_fast_parser_leaves_everything_else_to_typer(argv: list[str]) -> None:
    from sandboxctl.cli.fast import parse_fast

    assert parse_fast(argv) is None


def test_engine_create_body_is_what_the_docker_sdk_sends() -> None:
    """create without the SDK sends the same container config the SDK's `create_container` builds."""
    from docker.types import ContainerConfig, HostConfig

    from sandboxctl.backends.base import CreateSpec
    from sandboxctl.backends.docker import KEEP_ALIVE, WORKSPACE, container_config

    for cpus, memory in ((None, None), (1.5, 512 * 1024**2)):
        spec = CreateSpec(
            sandbox_id="0123456789ab",
            name="n",
            image="img:1",
            labels={"sandboxctl.id": "0123456789ab", "team": "a"},
            env={"A": "1", "B": "x=y"},
            cpus=cpus,
            memory_bytes=memory,
        )
        sdk = ContainerConfig(
            "1.41",
            "img:1",
            KEEP_ALIVE[1:],
            hostname="sandbox-0123456789ab",
            labels=dict(spec.labels),
            environment=dict(spec.env),
            working_dir=WORKSPACE,
            entrypoint=KEEP_ALIVE[:1],
        )
        sdk["HostConfig"] = HostConfig(
            version="1.41", init=True, nano_cpus=int(cpus * 1e9) if cpus else None, mem_limit=memory
        )
        assert container_config(spec) == {key: value for key, value in sdk.items() if value is not None}


def test_create_writes_the_same_row_through_the_reader_as_through_sqlmodel(tmp_path: Path) -> None:
    """create's insert and status change on the fast path and the full path: identical rows."""
    from sandboxctl.services.lifecycle import CreateOptions, create_sandbox

    t0 = datetime(2026, 7, 8, 9, 10, 11, 121314, tzinfo=UTC)
    options = CreateOptions(
        backend="local", image=None, name="same", labels={"é": "✓"}, env={"B": "2", "A": "1"}, ttl=timedelta(hours=2)
    )
    rows = []
    for fast in (True, False):
        home = tmp_path / ("fast" if fast else "full")
        ctx = Context(settings=Settings.load(str(home / "registry.db")), clock=lambda: t0)
        ctx.registry  # noqa: B018 - migrated, so the reader can serve
        if not fast:
            ctx._reader_checked = True  # the full path only: no reader
        assert (ctx.reader is not None) == fast
        made = create_sandbox(ctx, options)
        with sqlite3.connect(home / "registry.db") as conn:
            conn.row_factory = sqlite3.Row
            row = dict(conn.execute("SELECT * FROM sandbox").fetchone())
        assert row["id"] == made.id and row["status"] == "running" and row["backend_id"]
        rows.append({k: v for k, v in row.items() if k not in ("id", "backend_id", "pid")})
    assert rows[0] == rows[1]
