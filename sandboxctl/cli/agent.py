"""`sandboxctl agent-run` and `sandboxctl agent send|list|show|logs|cancel`.

The service reports progress only as events; this module turns them into one of
three views: a rich live view on a terminal, plain pass-through lines off one,
or nothing but the summary on stdout with `--json`.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import BackendOption, EnvFileOption, EnvOption, JsonOption, LabelOption
from sandboxctl.durations import format_duration, parse_duration
from sandboxctl.envvars import collect_env
from sandboxctl.errors import UsageError
from sandboxctl.labels import parse_labels
from sandboxctl.registry.states import Policy
from sandboxctl.services.agent_options import DEFAULT_HEARTBEAT_SECONDS, AgentRunOptions, KeepPolicy
from sandboxctl.services.context import Context
from sandboxctl.sizes import parse_size

if TYPE_CHECKING:
    from rich.console import RenderableType

    from sandboxctl.services.agent_run import AgentRunner

ENV_HEARTBEAT = "SANDBOXCTL_HEARTBEAT_SECONDS"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

app = typer.Typer(help="Talk to and inspect agent runs.", no_args_is_help=True, rich_markup_mode=None)


# -- views -----------------------------------------------------------------------
def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 60 else format_duration(timedelta(seconds=value))


def step_message(event: dict[str, Any]) -> str | None:
    """One human line per step event (None: nothing worth a line)."""
    kind = event["type"]
    if kind == "run.started":
        return f"started on {event['backend']}; output in {event['output_dir']}"
    if kind == "sandbox.created":
        return f"sandbox {event['sandbox_id']} created"
    if kind == "workspace.ready":
        base = f" at {event['base_commit'][:12]}" if event.get("base_commit") else ""
        dirty = event.get("uncommitted_changes_ignored")
        note = " (uncommitted changes in your checkout are not included)" if dirty else ""
        return f"workspace ready{base}{note}"
    if kind == "setup.finished" and not event.get("skipped"):
        return f"setup {_outcome(event)}"
    if kind == "agent.started":
        return "agent started"
    if kind == "agent.exited":
        return f"agent {_outcome(event)}"
    if kind == "result.collected":
        if event.get("error"):
            return f"warning: could not collect the result: {event['error']}"
        changed = f"{len(event['changed_files'])} file(s) changed; patch: {event['patch_path']}"
        if skipped := event.get("skipped_files"):
            left_out = ", ".join(f"{item['path']!r} ({item['reason']})" for item in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            # The entry limit closes the list: say it even when it is not among the first five.
            limit = next((item["reason"] for item in skipped[5:] if item["reason"].startswith("entry limit")), "")
            return f"warning: {changed}; left out of the patch: {left_out}{more}" + (f"; {limit}" if limit else "")
        return changed
    if kind == "push.finished":
        if event.get("pushed"):
            return f"pushed {event['commit'][:12]} to branch {event['branch']} of {event['remote']}"
        if event.get("error"):
            return f"warning: push failed: {event['error']}"
        return f"not pushed: {event.get('skip_reason')}"
    if kind == "sandbox.deleted":
        return f"sandbox {event['sandbox_id']} deleted"
    if kind == "sandbox.kept":
        sandbox = event["sandbox_id"]
        prefix = "warning: " if event["reason"].startswith("deletion failed") else ""
        hint = f"`sandboxctl shell {sandbox}` to look inside, `sandboxctl delete {sandbox}` when done"
        if "expires_at" not in event:  # a failed deletion: the sandbox is left to cleanup
            return f"{prefix}sandbox {sandbox} kept: {event['reason']} ({hint})"
        return f"{prefix}sandbox {sandbox} kept: {event['reason']}; {_expiry(sandbox, event['expires_at'])}; {hint}"
    if kind == "run.interrupted":
        cause = "cancel requested" if event.get("cancelled") else f"{event['signal']} received"
        return f"{cause}: collecting the result and finalizing"
    if kind == "run.finished":
        took = _seconds(event["duration_seconds"])
        kept = ""
        if event.get("kept_until"):
            kept = f"; sandbox {event['sandbox_id']} kept, {_expiry(event['sandbox_id'], event['kept_until'])}"
        return f"{event['status']} (exit {event['exit_code']}) in {took}; summary: {event['summary_path']}{kept}"
    return None


def _expiry(sandbox: str, expires_at: str | None) -> str:
    """How long a kept sandbox lives, and how to give it longer."""
    if not expires_at:
        return "never expires"
    return f"expires {expires_at} (`sandboxctl extend {sandbox} --ttl DUR` for longer)"


def _outcome(event: dict[str, Any]) -> str:
    if event.get("interrupted"):
        return f"interrupted by {event['interrupted']}"
    if event.get("timed_out"):
        return f"timed out after {_seconds(event['duration_seconds'])}"
    return f"exited {event['exit_code']} after {_seconds(event['duration_seconds'])}"


class PlainView:
    """Off a terminal: agent output passed through (stdout to stdout, stderr to stderr; both to stderr with
    `--json`), step lines on stderr (only warnings with `--json`), and with `--events -` the JSON lines on
    stdout (stderr with `--json`)."""

    def __init__(self, *, json_mode: bool, events_to_console: bool) -> None:
        self.json_mode = json_mode
        # Where the JSON-line events go: None (not to the console), or stderr / stdout.
        self.events_to_stderr: bool | None = json_mode if events_to_console else None
        # With the events on stdout, the output is in them: stdout stays pure JSON lines.
        self.pass_through = not (events_to_console and not json_mode)
        self.lock = threading.Lock()

    def on_event(self, event: dict[str, Any]) -> None:
        with self.lock:
            if self.events_to_stderr is not None:
                render.emit_json_line(event, stderr=self.events_to_stderr)
            kind = event["type"]
            if kind.endswith(".output"):
                if self.pass_through:
                    render.emit_text(event["text"], stderr=event["stream"] != "stdout" or self.json_mode)
                return
            line = step_message(event)
            if line is None:
                return
            if line.startswith("warning:"):
                render.message(line)
            elif not self.json_mode:
                render.message(f"agent-run {event['run_id']}: {line}")

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


# What the live view shows as the step once an event has happened.
_LIVE_STEPS = {
    "run.started": "preparing the workspace",
    "sandbox.created": "uploading the workspace",
    "setup.started": "setup",
    "agent.started": "agent",
    "agent.exited": "collecting the result",
    "result.collected": "finalizing",
    "run.interrupted": "collecting the result",
}


class LiveView:
    """On a terminal: a rich live panel (step, elapsed, the last output lines) under a log of step lines."""

    LINES = 12

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        self.lock = threading.Lock()
        self.run_id = ""
        self.step = "starting"
        self.sandbox_id: str | None = None
        self.started = time.monotonic()
        self.lines: deque[str] = deque(maxlen=self.LINES)
        self.partial = ""
        self.took: float | None = None  # set when the run finished: the clock stops
        self.live: Any = None

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        with self.lock:
            elapsed = _seconds(self.took if self.took is not None else time.monotonic() - self.started)
            header = Text(f"step: {self.step}   elapsed: {elapsed}   sandbox: {self.sandbox_id or '-'}", style="bold")
            shown = [*self.lines, self.partial] if self.partial else list(self.lines)
            # One screen row per line: progress bars redraw with \r, long lines are cut.
            body = [
                Text.from_ansi(line.rsplit("\r", 1)[-1], no_wrap=True, overflow="ellipsis")
                for line in shown[-self.LINES :]
            ]
        return Panel(Group(header, *body), title=f"agent-run {self.run_id}", title_align="left")

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        with self.lock:
            self.run_id = event["run_id"]
            if kind == "sandbox.created":
                self.sandbox_id = event["sandbox_id"]
            if kind == "run.finished":
                self.took = event["duration_seconds"]
                self.step = event["status"]
            else:
                self.step = _LIVE_STEPS.get(kind, self.step)
            if kind.endswith(".output"):
                text = self.partial + event["text"]
                *complete, self.partial = text.split("\n")
                self.lines.extend(complete)
                return
        line = step_message(event)
        if line is not None:
            self.console.print(line, markup=False, soft_wrap=True)

    def __enter__(self) -> LiveView:
        from rich.live import Live

        self.live = Live(self, console=self.console, refresh_per_second=4)
        self.live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.live.stop()


@contextmanager
def _stop_on_signals(runner: AgentRunner) -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP stop the agent; the run then collects and finalizes as after a timeout."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        runner.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- commands --------------------------------------------------------------------
def _read_task(task: str | None, task_file: str | None) -> str:
    if task is not None and task_file is not None:
        raise UsageError("give either --task or --task-file, not both")
    if task_file is None:
        return task or ""
    if task_file == "-":
        return sys.stdin.read()
    try:
        return Path(task_file).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read --task-file {task_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read --task-file {task_file}: not UTF-8 text") from None


def _heartbeat_seconds() -> float:
    raw = os.environ.get(ENV_HEARTBEAT)
    if not raw:
        return DEFAULT_HEARTBEAT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"invalid {ENV_HEARTBEAT}={raw!r}: use a number of seconds greater than 0")
    return value


def agent_run_cmd(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None, typer.Argument(metavar="-- AGENT_CMD [ARG...]", help="The agent and its arguments.")
    ] = None,
    *,
    backend: BackendOption = None,
    image: Annotated[str | None, typer.Option("--image", "-i", help="Image (default: config `image`).")] = None,
    repo: Annotated[
        str | None,
        typer.Option("--repo", metavar="PATH|URL", help="Repository to work on (default: an empty workspace)."),
    ] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Commit, branch or tag to start from (default HEAD).")] = (
        None
    ),
    task: Annotated[str | None, typer.Option("--task", help="The task, in $SANDBOXCTL_TASK and a file.")] = None,
    task_file: Annotated[
        str | None, typer.Option("--task-file", metavar="FILE", help="Read the task from FILE (`-`: stdin).")
    ] = None,
    setup: Annotated[str | None, typer.Option("--setup", metavar="CMD", help="Run `sh -c CMD` first.")] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", "-t", metavar="DUR", help="Stop setup and agent after DUR, exit 124 (config agent.timeout)."
        ),
    ] = None,
    keep: Annotated[
        KeepPolicy, typer.Option("--keep", help="Keep the sandbox afterwards: on-failure, always or never.")
    ] = KeepPolicy.ON_FAILURE,
    keep_for: Annotated[
        str | None,
        typer.Option(
            "--keep-for",
            metavar="DUR",
            help="A sandbox kept after a run that did not succeed expires DUR after the run (config agent.keep_for).",
        ),
    ] = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", metavar="DUR", help="The sandbox's lifetime (as create; default: policy's).")
    ] = None,
    idle_timeout: Annotated[
        str | None, typer.Option("--idle-timeout", metavar="DUR", help="The sandbox's idle timeout (as create).")
    ] = None,
    policy: Annotated[
        Policy, typer.Option("--policy", help="The sandbox's policy: default, extended or permanent (as create).")
    ] = Policy.DEFAULT,
    env: EnvOption = None,
    env_file: EnvFileOption = None,
    label: LabelOption = None,
    events: Annotated[
        str | None, typer.Option("--events", metavar="FILE|-", help="Append JSON-line events to FILE (`-`: stdout).")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="DIR", help="Where patch and summary go.")
    ] = None,
    push_branch: Annotated[
        str | None, typer.Option("--push-branch", metavar="NAME", help="Commit the result and push it to origin NAME.")
    ] = None,
    max_collect: Annotated[
        str | None,
        typer.Option(
            "--max-collect", metavar="SIZE", help="Collect at most SIZE of returned files (config agent.max_collect)."
        ),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Run an agent on a copy of a repository in a fresh sandbox; collect its patch; finalize the sandbox."""
    app: Context = ctx.obj
    options = AgentRunOptions(
        command=tuple(command or ()),  # everything after `--`, as given; empty is refused by the service
        backend=backend or app.settings.backend,
        image=image,
        repo=repo,
        ref=ref,
        task=_read_task(task, task_file),
        setup=setup,
        timeout=parse_duration(timeout, allow_zero=False) if timeout is not None else None,
        keep=keep,
        env=collect_env(env or [], env_file or []),
        labels=parse_labels(label or []),
        output_dir=Path(output) if output is not None else None,
        events_path=Path(events) if events not in (None, "-") else None,
        push_branch=push_branch,
        heartbeat_seconds=_heartbeat_seconds(),
        max_collect=parse_size(max_collect) if max_collect is not None else None,
        keep_for=parse_duration(keep_for) if keep_for is not None else None,
        ttl=parse_duration(ttl) if ttl is not None else None,
        idle_timeout=parse_duration(idle_timeout) if idle_timeout is not None else None,
        policy=policy,
    )
    from sandboxctl.services.agent_run import AgentRunner  # lazy, after parsing: keeps --help free of SQLModel

    events_to_console = events == "-"
    view: PlainView | LiveView
    if not json_ and not events_to_console and sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        view = LiveView()
    else:
        view = PlainView(json_mode=json_, events_to_console=events_to_console)
    runner = AgentRunner(app, options, listener=view.on_event)
    with view, _stop_on_signals(runner):
        summary = runner.run()
    if json_:
        render.emit_json(summary)
    if summary["status"] == "timed_out":
        limit = format_duration(timedelta(seconds=summary["timeout_seconds"]))
        render.message(f"error: agent-run {summary['run_id']} timed out after {limit}: the agent was stopped")
    raise typer.Exit(summary["exit_code"])


@app.command("send")
def send_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id or unique prefix.")],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The message (`-`: read it from stdin).")],
    *,
    json_: JsonOption = False,
) -> None:
    """Append a message to a running agent's inbox (`$SANDBOXCTL_INBOX`, one JSON line: ts, text)."""
    from sandboxctl.services.agent_control import send_message

    app: Context = ctx.obj
    sent = send_message(app, run_id, sys.stdin.read().rstrip("\n") if text == "-" else text)
    if json_:
        render.emit_json(sent)


RUN_COLUMNS = ("RUN", "STATUS", "STATE", "EXIT", "BACKEND", "SANDBOX", "STARTED", "DURATION", "TASK")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    *,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="S",
            help="Only runs in state S (repeatable): running (any run in progress), abandoned, a step "
            "(pending, preparing, creating, uploading, setup, collecting, pushing, finalizing) or an end "
            "(succeeded, failed, timed_out, interrupted, cancelled, error).",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DUR", help="Only runs started within DUR of now.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Run ids only, one per line.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N runs, newest first.")] = 50,
    json_: JsonOption = False,
) -> None:
    """Recent agent runs, newest first."""
    from sandboxctl.services.agent_control import list_agent_runs

    app: Context = ctx.obj
    window = parse_duration(since) if since is not None else None
    runs = list_agent_runs(app, limit=limit, states=state or (), since=window)
    if json_:
        render.emit_json(runs)
        return
    if quiet:
        for run in runs:
            render.emit_line(run["run_id"])
        return
    rows = [
        [
            run["run_id"],
            run["status"],
            run["state"],
            "-" if run["exit_code"] is None else str(run["exit_code"]),
            run["backend"],
            run["sandbox_id"] or "-",
            render.relative(run["started_at"]),
            _seconds(run["duration_seconds"]),
            (run["task"].strip().splitlines() or ["-"])[0][:40],
        ]
        for run in runs
    ]
    render.table(RUN_COLUMNS, rows)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id or unique prefix.")],
    *,
    json_: JsonOption = False,
) -> None:
    """One agent run: status, steps, exit code, changed files, patch, and what became of its sandbox."""
    from sandboxctl.services.agent_control import show_run

    app: Context = ctx.obj
    run = show_run(app, run_id)
    if json_:
        render.emit_json(run)
        return
    shown = {key: _show_value(key, value) for key, value in run.items()}
    if run["kept_until"] and run["sandbox_status"] not in (None, "deleted"):
        shown["kept_until"] = f"{run['kept_until']} (`sandboxctl extend {run['sandbox_id']} --ttl DUR` for longer)"
    render.fields(shown)


@app.command("logs")
def logs_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id or unique prefix.")],
    *,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Wait for more until the run ends; exit with the run's code.")
    ] = False,
    events: Annotated[bool, typer.Option("--events", help="Print the raw JSON-line events instead.")] = False,
) -> None:
    """A run's output (its stdout to stdout, its stderr to stderr), while it runs and after."""
    from sandboxctl.services.agent_logs import final_exit_code, open_run, run_events

    app: Context = ctx.obj
    run = open_run(app, run_id)
    for entry in run_events(app, run, follow=follow):
        if events:
            render.emit_text(entry.line + "\n")
        elif (output := entry.output) is not None:
            render.emit_text(output[1], stderr=output[0] != "stdout")
    if follow:
        raise typer.Exit(final_exit_code(app, run.id))


@app.command("cancel")
def cancel_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id or unique prefix.")],
    *,
    wait: Annotated[
        str, typer.Option("--wait", metavar="DUR", help="How long to wait for the run to finalize (0s: don't).")
    ] = "1m",
    json_: JsonOption = False,
) -> None:
    """Stop a running agent-run of this host; it finalizes by its --keep policy and records `cancelled`.

    A run that already finished, or that runs on another host, is refused (exit 1)."""
    from sandboxctl.services.agent_control import cancel_run

    app: Context = ctx.obj
    run = cancel_run(app, run_id, wait=parse_duration(wait))
    if json_:
        render.emit_json(run)
    status = run["status"]
    if status == "running":
        render.message(f"agent-run {run['run_id']}: cancel requested; still finalizing (`sandboxctl agent show`)")
    elif status == "cancelled":
        render.message(f"agent-run {run['run_id']} cancelled (its exit code: {run['exit_code']})")
    else:
        render.message(f"error: agent-run {run['run_id']} ended as {status} before the cancel reached it")
        raise typer.Exit(1)


def _show_value(key: str, value: Any) -> str | None:
    """`agent show` without --json: one readable line per field."""
    if value in (None, "", [], {}):
        return None
    if key == "command":
        return shlex.join(value)
    if key == "steps":
        return ", ".join(f"{name} {step['status']}" for name, step in value.items())
    if key == "changed_files":
        return ", ".join(f"{item['change']} {item['path']}" for item in value)
    if key == "sandbox_deletion":
        if value.get("skipped"):
            return f"kept: {value['skip_reason']}"
        return "deleted" if value["success"] else f"failed: {value['error']}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
