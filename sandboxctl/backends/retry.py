"""The one retry policy for transient backend failures (tenacity), shared by deletion and the Daytona adapter.

Transient means a retry may succeed: `Transient` (429, 5xx, a dropped
connection) and `Unresponsive` (no answer in time). Waits grow exponentially,
a server's `Retry-After` is honoured when it asks for longer, and no attempt
starts that could not end inside the window: an unresponsive server is only
asked again when a whole slow attempt still fits.

`retry_after` is for the hot paths: their first attempt runs before tenacity is
even imported (~10 ms of every `delete`), which it then is only for a retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sandboxctl.backends.base import Transient, Unresponsive

if TYPE_CHECKING:
    from tenacity import RetryCallState, Retrying

T = TypeVar("T")

RETRY_WITHIN_SECONDS = 60.0
RETRY_AFTER_CAP_SECONDS = 30.0  # a Retry-After beyond this is not waited for


class RetriesExhausted(Exception):
    """Every attempt inside the window failed with a transient error; `last` is the last one."""

    def __init__(self, last: BaseException | None) -> None:
        super().__init__(str(last))
        self.last = last


def _wait(wait_max: float) -> object:
    from tenacity import wait_exponential

    backoff = wait_exponential(multiplier=0.25, max=wait_max)

    def wait(state: RetryCallState) -> float:
        delay = float(backoff(state))
        error = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(error, "retry_after", None)
        if asked is not None and 0 <= asked <= RETRY_AFTER_CAP_SECONDS:
            delay = max(delay, asked)
        return delay

    return wait


def _stop(within_seconds: float, slow_attempt_seconds: float) -> object:
    def stop(state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome is not None else None
        needed = state.upcoming_sleep + (slow_attempt_seconds if isinstance(error, Unresponsive) else 0.0)
        return state.seconds_since_start + needed >= within_seconds

    return stop


def transient_retrying(
    *,
    within_seconds: float = RETRY_WITHIN_SECONDS,
    wait_max: float = 8.0,
    slow_attempt_seconds: float = 0.0,
    reraise: bool = False,
) -> Retrying:
    """A tenacity `Retrying` for transient failures, every attempt started and ended inside `within_seconds`.

    `slow_attempt_seconds`: how long one attempt may take before it counts as unresponsive
    (the caller's read timeout). `reraise`: raise the last error itself rather than `RetryError`.
    """
    from tenacity import Retrying, retry_if_exception_type

    return Retrying(
        retry=retry_if_exception_type((Transient, Unresponsive)),
        stop=_stop(within_seconds, slow_attempt_seconds),  # type: ignore[arg-type]
        wait=_wait(wait_max),  # type: ignore[arg-type]
        reraise=reraise,
    )


def retry_after(
    first: Transient | Unresponsive,
    call: Callable[[], T],
    *,
    started: float,
    within_seconds: float = RETRY_WITHIN_SECONDS,
    wait_max: float = 8.0,
) -> T:
    """Go on after a first attempt (begun at `started`, `time.monotonic()`) failed with `first`.

    The policy is `transient_retrying`'s, as if it had run that attempt: its error is replayed as
    attempt 1, so the first wait (and a `Retry-After`) and the window are the same. Raises
    `RetriesExhausted` when the window closes; any other error as it is.
    """
    from tenacity import RetryError

    pending: BaseException | None = first
    retrying = transient_retrying(within_seconds=within_seconds - (time.monotonic() - started), wait_max=wait_max)
    try:
        for attempt in retrying:
            with attempt:
                if pending is not None:
                    replayed, pending = pending, None
                    raise replayed
                return call()
    except RetryError as exc:
        raise RetriesExhausted(exc.last_attempt.exception()) from None
    raise AssertionError("unreachable: tenacity either returns an attempt's value or raises")
