"""`agent logs`: a run's events, read from its `events.jsonl` while it runs and after.

The file holds what came out of a sandbox, so it is read as untrusted text: line
by line with a bounded line length (never whole into memory), lines that are not
a JSON object of this run skipped, and only string fields passed on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sandboxctl.errors import OperationFailed
from sandboxctl.hostid import this_host
from sandboxctl.registry.models import AgentRun, AgentRunStatus
from sandboxctl.services.agent_control import ABANDONED, describe_run
from sandboxctl.services.context import Context

MAX_LINE_BYTES = 8 * 1024 * 1024  # one event line; output events carry one chunk of a stream, far below this
POLL_SECONDS = 0.2
OUTPUT_EVENTS = frozenset({"setup.output", "agent.output"})


@dataclass(frozen=True)
class LogEvent:
    """One event line: `line` as written (valid JSON), `event` parsed."""

    line: str
    event: dict[str, Any]

    @property
    def output(self) -> tuple[str, str] | None:
        """(stream, text) for an output event of a known stream with text; None otherwise."""
        stream, text = self.event.get("stream"), self.event.get("text")
        if self.event.get("type") in OUTPUT_EVENTS and stream in ("stdout", "stderr") and isinstance(text, str):
            return stream, text
        return None


class LineReader:
    """Complete lines from a growing file; a partial last line waits for its newline, an overlong one is dropped."""

    def __init__(self, handle: IO[bytes], max_line: int = MAX_LINE_BYTES) -> None:
        self.handle = handle
        self.max_line = max_line
        self.partial = b""
        self.discarding = False  # inside a line longer than max_line: skip to its end
        self.dropped = 0

    def available(self) -> Iterator[bytes]:
        while True:
            chunk = self.handle.readline(self.max_line + 1 - len(self.partial))
            if not chunk:
                return
            if chunk.endswith(b"\n"):
                line, self.partial = self.partial + chunk, b""
                if self.discarding:
                    self.discarding = False
                    continue
                yield line
            else:
                self.partial += chunk
                if len(self.partial) > self.max_line:
                    self.partial, self.discarding = b"", True
                    self.dropped += 1


def _parse(line: bytes, run_id: str) -> LogEvent | None:
    text = line.decode("utf-8", errors="replace").strip()
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or event.get("run_id") != run_id:
        return None
    return LogEvent(text, event)


def _finished(ctx: Context, run_id: str) -> bool:
    return describe_run(ctx.registry.resolve_run(run_id))["status"] != AgentRunStatus.RUNNING


def open_run(ctx: Context, ref: str) -> AgentRun:
    return ctx.registry.resolve_run(ref)


def run_events(ctx: Context, run: AgentRun, *, follow: bool) -> Iterator[LogEvent]:
    """The run's events in order; with `follow`, waits for more until the run has ended (or was abandoned)."""
    path = Path(run.output_dir) / "events.jsonl"
    if not path.exists() and run.host != this_host():
        raise OperationFailed(f"agent run {run.id} ran on host {run.host!r}: its events are there, in {path}")
    while not path.exists():
        if not follow or _finished(ctx, run.id):
            raise OperationFailed(f"agent run {run.id} has no events file at {path} (moved or deleted?)")
        time.sleep(POLL_SECONDS)
    with path.open("rb") as handle:
        reader = LineReader(handle)
        while True:
            finished = follow and _finished(ctx, run.id)  # before reading: what it wrote until now is read next
            for line in reader.available():
                if (event := _parse(line, run.id)) is not None:
                    yield event
            if not follow or finished:
                return
            time.sleep(POLL_SECONDS)


def final_exit_code(ctx: Context, run_id: str) -> int:
    """The run's own exit code once it ended; 1 for a run whose process died (abandoned) or that recorded none."""
    data = describe_run(ctx.registry.resolve_run(run_id))
    if data["status"] == ABANDONED or data["exit_code"] is None:
        return 1
    return int(data["exit_code"])
