"""Agent-run events: JSON lines with `ts`, `run_id` and `type`, written to files and handed to one listener.

Every line passes through the `Redactor` first, so a secret value that reaches an
event by any path (the agent echoing it, an error message) is written as `***`.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

Event = dict[str, Any]
EventListener = Callable[[Event], None]

MASK = "***"


class Redactor:
    """Replaces secret values with `***`.

    Values shorter than `MIN_LENGTH` are not masked: `1` or `on` would shred all output.
    """

    MIN_LENGTH = 4

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if len(s) >= self.MIN_LENGTH}
        # A secret as it appears inside a JSON string, too, since events are redacted once serialised.
        values |= {json.dumps(s, ensure_ascii=False)[1:-1] for s in values}
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def partial_suffix(self, text: str) -> int:
        """Length of the longest tail of `text` that could be the start of a secret."""
        longest = 0
        for secret in self.secrets:
            for size in range(min(len(secret) - 1, len(text)), longest, -1):
                if text.endswith(secret[:size]):
                    longest = size
                    break
        return longest


class StreamRedactor:
    """Decodes one output stream incrementally and masks secrets, even ones split across chunks.

    A tail that might begin a secret is held back until the next chunk (or `flush`).
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, chunk: bytes) -> str:
        text = self.redactor(self.pending + self.decoder.decode(chunk))
        held = self.redactor.partial_suffix(text)
        self.pending = text[len(text) - held :] if held else ""
        return text[: len(text) - held]

    def flush(self) -> str:
        text = self.redactor(self.pending + self.decoder.decode(b"", final=True))
        self.pending = ""
        return text


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def open_private_append(path: Path) -> IO[str]:
    """Open for appending, creating the file 0600: events may hold the agent's output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")


class EventLog:
    """Thread-safe: output pumps, the heartbeat and the run itself all emit."""

    def __init__(
        self, run_id: str, *, files: Iterable[Path], listener: EventListener | None, redactor: Redactor
    ) -> None:
        self.run_id = run_id
        self.listener = listener
        self.redactor = redactor
        self.lock = threading.Lock()
        self.handles: list[IO[str]] = []
        self.closed = False
        try:
            for path in files:
                self.handles.append(open_private_append(path))
        except BaseException:
            self.close()
            raise

    def emit(self, type_: str, **fields: Any) -> Event:
        raw = {"ts": timestamp(), "run_id": self.run_id, "type": type_, **fields}
        line = self.redactor(json.dumps(raw, ensure_ascii=False))
        event: Event = json.loads(line)  # what every reader sees: the redacted form
        with self.lock:
            if self.closed:  # a straggling output pump after the run finished
                return event
            for handle in self.handles:
                handle.write(line + "\n")
                handle.flush()
            if self.listener is not None:
                # The listener renders (a terminal, a pipe): a closed pipe must not stop the run.
                with contextlib.suppress(OSError):
                    self.listener(event)
        return event

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for handle in self.handles:
                with contextlib.suppress(OSError):
                    handle.close()
            self.handles = []


class Heartbeat:
    """Calls `beat` every `interval` seconds from a daemon thread until `stop`."""

    def __init__(self, interval: float, beat: Callable[[], None]) -> None:
        self.interval = interval
        self.beat = beat
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="agent-run-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            with contextlib.suppress(OSError):  # a full disk must not kill the thread with a traceback
                self.beat()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
