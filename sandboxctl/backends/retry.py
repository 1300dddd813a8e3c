"""The one retry policy for transient backend failures (tenacity), shared by deletion and the Daytona adapter.

Transient means a retry may succeed: `Transient` (429, 5xx, a dropped
connection) and `Unresponsive` (no answer in time). Waits grow exponentially,
a server's `Retry-After` is honoured when it asks for longer, and no attempt
starts that could not end inside the window: an unresponsive server is only
asked again when a whole slow attempt still fits.
"""

from __future__ import annotations

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from sandboxctl.backends.base import Transient, Unresponsive

RETRY_WITHIN_SECONDS = 60.0
RETRY_AFTER_CAP_SECONDS = 30.0  # a Retry-After beyond this is not waited for


def _wait(wait_max: float) -> object:
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
    return Retrying(
        retry=retry_if_exception_type((Transient, Unresponsive)),
        stop=_stop(within_seconds, slow_attempt_seconds),  # type: ignore[arg-type]
        wait=_wait(wait_max),  # type: ignore[arg-type]
        reraise=reraise,
    )
