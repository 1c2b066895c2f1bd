"""What one HTTP attempt means for its delivery (CONTRACT section 4), as a pure function.

`2xx` succeeds. `410 Gone` stops for good and disables the subscription. A target the SSRF
guard refuses fails at once: retrying would be refused again. Anything else (another status,
a redirect, a timeout, a refused connection, a TLS error) is retried after the schedule's
delay for that attempt, or, for a `429`/`503` with `Retry-After`, not sooner than asked.
After the last attempt a failure is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.retry import RetrySchedule, parse_retry_after

RETRY_AFTER_STATUSES = frozenset({429, 503})


class Outcome(StrEnum):
    """An attempt's outcome; also the `outcome` label of `hookline_delivery_attempts_total`."""

    SUCCESS = "success"
    RETRY = "retry"
    GONE = "gone"
    FAILED = "failed"


class ErrorKind(StrEnum):
    """Why an attempt did not succeed, as stored in `delivery_attempts.error_kind`."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TLS = "tls"
    TARGET_REFUSED = "target_refused"
    NETWORK = "network"
    HTTP_STATUS = "http_status"
    REDIRECT = "redirect"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What happened on the wire: a status (with what was read of the answer) or an error."""

    duration_s: float
    status_code: int | None = None
    response_body: str | None = None
    retry_after: str | None = None
    location: str | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision about a delivery after one attempt."""

    outcome: Outcome
    retry_in_s: float | None = None
    """For `RETRY`: the delay, always one that has a retry queue."""
    error_kind: ErrorKind | None = None
    error: str | None = None

    @property
    def delivery_status(self) -> str:
        """The `deliveries.status` this verdict leaves behind."""
        if self.outcome is Outcome.SUCCESS:
            return "succeeded"
        if self.outcome is Outcome.RETRY:
            return "pending"
        return "failed"


def _failure(result: AttemptResult) -> tuple[ErrorKind, str]:
    if result.error_kind is not None:
        return result.error_kind, result.error or result.error_kind.value
    code = result.status_code
    if code is not None and 300 <= code < 400:
        where = f" to {result.location}" if result.location else ""
        return ErrorKind.REDIRECT, f"the receiver answered {code}; redirect{where} not followed"
    return ErrorKind.HTTP_STATUS, f"the receiver answered {code}"


def _retry_delay(result: AttemptResult, attempt: int, schedule: RetrySchedule) -> float:
    delay_s = schedule.delay_after(attempt)
    if result.status_code in RETRY_AFTER_STATUSES:
        asked_s = parse_retry_after(result.retry_after)
        if asked_s is not None and asked_s > delay_s:
            return schedule.queue_delay_at_least(asked_s)
    return delay_s


def classify(result: AttemptResult, attempt: int, schedule: RetrySchedule) -> Verdict:
    """The verdict on attempt number `attempt` (1-based) of a delivery under `schedule`."""
    code = result.status_code
    if result.error_kind is None and code is not None and 200 <= code < 300:
        return Verdict(Outcome.SUCCESS)
    if result.error_kind is None and code == 410:
        return Verdict(Outcome.GONE, error_kind=ErrorKind.GONE, error="the receiver answered 410")
    kind, error = _failure(result)
    if kind is ErrorKind.TARGET_REFUSED:
        return Verdict(Outcome.FAILED, error_kind=kind, error=error)
    if schedule.is_last(attempt):
        final = f"{error} (attempt {attempt} of {schedule.max_attempts}, no retry left)"
        return Verdict(Outcome.FAILED, error_kind=kind, error=final)
    return Verdict(
        Outcome.RETRY,
        retry_in_s=_retry_delay(result, attempt, schedule),
        error_kind=kind,
        error=error,
    )
