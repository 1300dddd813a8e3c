"""`status`, `delete` and `create` without Typer: their bodies, and a parser for their everyday forms.

Importing Typer costs ~0.1 s (with pydantic), five times a `docker ps`. These
commands take few options, so `parse_fast` reads their plain forms before Typer is
imported; anything else (help, an unknown or misplaced option, `--`) returns None
and Typer parses as usual. Both paths run the same bodies below with the same
values: tests/test_reader.py drives the same argv through both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from sandboxctl.cli import render
from sandboxctl.config import Settings, configure_logs, take_log_format
from sandboxctl.durations import parse_duration
from sandboxctl.envvars import collect_env
from sandboxctl.errors import BackendUnavailable, OperationFailed, UsageError
from sandboxctl.labels import parse_labels
from sandboxctl.limits import check_cpus, parse_memory
from sandboxctl.registry.states import Policy
from sandboxctl.services.context import Context

DEFAULT_SORT = "-created"  # newest first


def show_status(
    app: Context,
    sandbox: str | None,
    *,
    all_: bool,
    backend: str | None,
    label: list[str],
    json_: bool,
    state: list[str] | None = None,
    expired: bool = False,
    quiet: bool = False,
    sort: str | None = None,
    user: str | None = None,
) -> None:
    from sandboxctl.registry.reader import SandboxQuery
    from sandboxctl.services.listing import iter_sandboxes, sandbox_status, status_table_text

    if sandbox is not None and (state or expired or quiet or sort):
        raise UsageError("--state, --expired, --quiet and --sort filter the list: omit SANDBOX")
    if sandbox is not None:
        record = sandbox_status(app, sandbox)
        if json_:
            render.emit_json(record)
            return
        render.fields(record)
        return
    query = SandboxQuery(
        backend=backend,
        states=tuple(state or ()),
        expired_at=app.now() if expired else None,
        sort=sort or DEFAULT_SORT,
        created_by=user,
    )
    selector = parse_labels(label)
    if not (quiet or json_ or render.stdout_is_terminal()):
        text = status_table_text(app, render.SANDBOX_COLUMNS, include_archived=all_, selector=selector, query=query)
        if text is not None:  # laid out by SQLite: ~3.5 us a record, against ~10 for the Python table
            render.emit_chunks(text)
            return
    records = iter_sandboxes(app, include_archived=all_, selector=selector, query=query)
    if quiet:
        for record in records:
            render.emit_line(record["id"])
        return
    if json_:
        render.emit_json_array(records)  # streamed: 20,000 records never sit in memory at once
        return
    render.table(render.SANDBOX_COLUMNS, render.sandbox_rows(records, app.now()))


def create(
    app: Context,
    *,
    backend: str | None,
    image: str | None,
    name: str | None,
    policy: str,
    ttl: str | None,
    idle_timeout: str | None,
    label: list[str],
    env: list[str],
    env_file: list[str],
    cpus: float | None,
    memory: str | None,
    json_: bool,
) -> None:
    from sandboxctl.services.lifecycle import CreateOptions, create_sandbox

    options = CreateOptions(
        backend=backend or app.settings.backend,
        image=image,
        name=name,
        policy=Policy(policy),
        ttl=parse_duration(ttl) if ttl is not None else None,
        idle_timeout=parse_duration(idle_timeout) if idle_timeout is not None else None,
        labels=parse_labels(label),
        env=collect_env(env, env_file),
        cpus=check_cpus(cpus) if cpus is not None else None,
        memory_bytes=parse_memory(memory) if memory is not None else None,
    )
    record = create_sandbox(app, options)
    if json_:
        render.emit_json(record.to_json())
        return
    render.emit_line(record.id)


def delete(app: Context, sandboxes: Sequence[str], *, json_: bool) -> int:
    """Returns the exit code: 0, or 1 (4 when every failure was an unreachable backend)."""
    from sandboxctl.services.removal import delete_sandboxes

    outcomes = delete_sandboxes(app, sandboxes)
    failed = [o for o in outcomes if not o.success]
    if json_:
        render.emit_json([o.to_json() for o in outcomes])
    else:
        for outcome in outcomes:
            if outcome.success:
                render.emit_line(outcome.sandbox_id)
    for outcome in failed:
        render.message(f"error: could not delete {outcome.sandbox_id}: {outcome.error} (kept as failed; retry later)")
    if not failed:
        return 0
    return BackendUnavailable.exit_code if all(o.unavailable for o in failed) else OperationFailed.exit_code


# -- the Typer-free parser -----------------------------------------------------------
class _Grammar(NamedTuple):
    flags: dict[str, str]  # option -> parameter set to True
    valued: dict[str, str]  # option -> parameter taking one value
    repeated: dict[str, str]  # option -> parameter collecting values
    min_args: int
    max_args: int | None


GRAMMARS = {
    "status": _Grammar(
        flags={
            "--json": "json_",
            "--all": "all_",
            "-a": "all_",
            "--expired": "expired",
            "--quiet": "quiet",
            "-q": "quiet",
        },
        valued={"--backend": "backend", "-b": "backend", "--sort": "sort", "--user": "user", "-u": "user"},
        repeated={"--label": "label", "-l": "label", "--state": "state", "-s": "state"},
        min_args=0,
        max_args=1,
    ),
    "delete": _Grammar(flags={"--json": "json_"}, valued={}, repeated={}, min_args=1, max_args=None),
    "create": _Grammar(
        flags={"--json": "json_"},
        valued={
            **{"--backend": "backend", "-b": "backend", "--image": "image", "-i": "image"},
            **{"--name": "name", "-n": "name", "--ttl": "ttl", "--idle-timeout": "idle_timeout"},
            **{"--policy": "policy", "--cpus": "cpus", "--memory": "memory"},
        },
        repeated={"--label": "label", "-l": "label", "--env": "env", "-e": "env", "--env-file": "env_file"},
        min_args=0,
        max_args=0,
    ),
}


def _typed(command: str, params: dict[str, object]) -> bool:
    """Convert what Typer would convert; False when Typer must judge the value (and word the error)."""
    if command != "create":
        return True
    if params["policy"] is None:
        params["policy"] = Policy.DEFAULT.value
    elif params["policy"] not in {p.value for p in Policy}:
        return False
    if params["cpus"] is not None:
        try:
            params["cpus"] = float(str(params["cpus"]))
        except ValueError:
            return False
    return True


class FastCommand(NamedTuple):
    db: str | None
    command: str
    args: tuple[str, ...]
    params: dict[str, object]
    log_format: str | None = None

    def run(self) -> int:
        settings = Settings.load(self.db)
        configure_logs(settings, self.log_format)
        app = Context(settings=settings)
        if self.command == "status":
            show_status(app, self.args[0] if self.args else None, **self.params)  # type: ignore[arg-type]
            return 0
        if self.command == "create":
            create(app, **self.params)  # type: ignore[arg-type]
            return 0
        return delete(app, self.args, **self.params)  # type: ignore[arg-type]


def parse_fast(argv: Sequence[str]) -> FastCommand | None:
    """`[--db URL] [--debug] [--log-format F] status|delete|create ...` in its plain forms, or None for Typer."""
    args = list(argv)
    db: str | None = None
    log_format: str | None = None
    while args and args[0] not in GRAMMARS:  # root options
        if args[0] == "--debug":
            args.pop(0)
        elif args[0] == "--db" and len(args) > 1:
            db = args[1]
            del args[:2]
        elif (chosen := take_log_format(args)) is not None:
            log_format = chosen
        else:
            return None
    if not args:
        return None
    command, rest = args[0], args[1:]
    grammar = GRAMMARS[command]
    params: dict[str, object] = {name: False for name in grammar.flags.values()}
    params.update({name: None for name in grammar.valued.values()})
    params.update({name: [] for name in grammar.repeated.values()})
    positional: list[str] = []
    take: Callable[[], str | None] = lambda: rest.pop(0) if rest else None  # noqa: E731
    while rest:
        word = rest.pop(0)
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        option, has_inline, inline = word.partition("=")
        if option in grammar.flags and not has_inline:
            params[grammar.flags[option]] = True
            continue
        if option not in grammar.valued and option not in grammar.repeated:
            return None  # --help, `--`, unknown options: Typer's to judge
        value = inline if has_inline else take()
        if value is None:
            return None
        if option in grammar.valued:
            params[grammar.valued[option]] = value
        else:
            params[grammar.repeated[option]].append(value)  # type: ignore[attr-defined]
    if len(positional) < grammar.min_args or (grammar.max_args is not None and len(positional) > grammar.max_args):
        return None
    if not _typed(command, params):
        return None
    return FastCommand(db, command, tuple(positional), params, log_format)
