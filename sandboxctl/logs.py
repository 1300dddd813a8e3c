"""Structured logs: one JSON object per line on stderr for every lifecycle action, when asked for.

Services call `log_event`; the CLI calls `configure` once from `--log-format` or
`SANDBOXCTL_LOG_FORMAT`. The default (`text`) adds nothing to the human output, and
`logging` is imported only when JSON logs are on: `exec`'s fast path stays as light as it was.
Every value passes through the caller's redactor and a redactor of the configured secrets
(the Daytona API key), so no env value or key reaches a log collector.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from sandboxctl.errors import UsageError

if TYPE_CHECKING:
    import logging

ENV_LOG_FORMAT = "SANDBOXCTL_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
LOGGER_NAME = "sandboxctl"

# Set once per process by `configure`; while off, `log_event` returns before importing anything.
_state: dict[str, Any] = {"enabled": False, "secrets": ()}


def check_format(value: str) -> str:
    if value not in LOG_FORMATS:
        raise UsageError(f"invalid log format {value!r}: use text or json")
    return value


def configure(log_format: str | None, secrets: tuple[str, ...] = (), stream: IO[str] | None = None) -> None:
    """`--log-format` wins over `$SANDBOXCTL_LOG_FORMAT`; `json` sends lifecycle events to stderr
    (or `stream`). A bad value is a usage error (exit 2) before the command does anything."""
    chosen = check_format(log_format or os.environ.get(ENV_LOG_FORMAT) or "text")
    if chosen != "json" or _state["enabled"]:
        return
    import logging
    import sys

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return format_record(record)

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    _state.update(enabled=True, secrets=tuple(s for s in secrets if s))


def log_event(
    event: str,
    *,
    sandbox_id: str | None,
    backend: str | None,
    duration_seconds: float | None = None,
    error: str | None = None,
    redact: Callable[[str], str] | None = None,
    **fields: Any,
) -> None:
    """One lifecycle event (created, exec_started, exec_ended, deleted, cleaned, kept, failed).

    `error` makes it a warning (`failed` an error); strings pass through `redact` before leaving."""
    if not _state["enabled"]:
        return
    import logging

    from sandboxctl.hostid import this_user

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return _mask(redact(value) if redact is not None else value, _state["secrets"])
        return value

    payload: dict[str, Any] = {
        "event": event,
        "sandbox_id": sandbox_id,
        "user": this_user(),
        "backend": backend,
        "duration_seconds": round(duration_seconds, 6) if duration_seconds is not None else None,
    }
    if error is not None:
        payload["error"] = error
    payload.update(fields)
    level = logging.ERROR if event == "failed" else logging.WARNING if error is not None else logging.INFO
    logging.getLogger(LOGGER_NAME).log(level, event, extra={"sandboxctl": {k: clean(v) for k, v in payload.items()}})


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    """Configured secrets (API keys) as `***`, longest first, as `services.events.Redactor` does (this leaf
    module may not import a service)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def format_record(record: logging.LogRecord) -> str:
    """The JSON line of one record: the fixed fields first, then the event's own."""
    payload = getattr(record, "sandboxctl", None) or {"event": record.getMessage()}
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    line = {"ts": stamp, "level": record.levelname.lower(), **payload}
    return json.dumps(line, ensure_ascii=False, default=str)
