"""Classification of one attempt: success, gone, retry (with Retry-After), final failure."""

from __future__ import annotations

import pytest

from services.sender.classify import AttemptResult, ErrorKind, Outcome, classify
from shared.retry import RetrySchedule

SCHEDULE = RetrySchedule((5.0, 300.0, 1800.0))


def status(code: int, **extra: str) -> AttemptResult:
    return AttemptResult(duration_s=0.01, status_code=code, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_any_2xx_succeeds(code: int) -> None:
    verdict = classify(status(code), 1, SCHEDULE)
    assert verdict.outcome is Outcome.SUCCESS
    assert verdict.delivery_status == "succeeded"


def test_410_is_gone_and_final_even_on_the_first_attempt() -> None:
    verdict = classify(status(410), 1, SCHEDULE)
    assert verdict.outcome is Outcome.GONE
    assert verdict.delivery_status == "failed"


@pytest.mark.parametrize("code", [400, 401, 404, 409, 429, 500, 502, 503, 504])
def test_other_statuses_retry_after_the_schedules_delay(code: int) -> None:
    verdict = classify(status(code), 2, SCHEDULE)
    assert verdict.outcome is Outcome.RETRY
    assert verdict.retry_in_s == 300.0
    assert verdict.error_kind is ErrorKind.HTTP_STATUS
    assert verdict.delivery_status == "pending"


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_retried_not_followed(code: int) -> None:
    verdict = classify(status(code, location="http://elsewhere/"), 1, SCHEDULE)
    assert verdict.outcome is Outcome.RETRY
    assert verdict.error_kind is ErrorKind.REDIRECT
    assert verdict.error is not None and "not followed" in verdict.error


@pytest.mark.parametrize("kind", [ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.TLS])
def test_transport_errors_retry(kind: ErrorKind) -> None:
    result = AttemptResult(duration_s=2.0, error_kind=kind, error="boom")
    verdict = classify(result, 1, SCHEDULE)
    assert (verdict.outcome, verdict.retry_in_s, verdict.error_kind) == (Outcome.RETRY, 5.0, kind)


def test_a_refused_target_fails_at_once() -> None:
    result = AttemptResult(
        duration_s=0.0, error_kind=ErrorKind.TARGET_REFUSED, error="the target is loopback"
    )
    verdict = classify(result, 1, SCHEDULE)
    assert verdict.outcome is Outcome.FAILED
    assert verdict.error == "the target is loopback"


def test_the_last_attempt_fails_for_good() -> None:
    verdict = classify(status(500), SCHEDULE.max_attempts, SCHEDULE)
    assert verdict.outcome is Outcome.FAILED
    assert verdict.retry_in_s is None
    assert verdict.error is not None and "500" in verdict.error


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_is_honoured_up_to_the_longest_queue(code: int) -> None:
    asked_10s = classify(status(code, retry_after="10"), 1, SCHEDULE)
    assert asked_10s.retry_in_s == 300.0
    asked_a_week = classify(status(code, retry_after="604800"), 1, SCHEDULE)
    assert asked_a_week.retry_in_s == 1800.0


def test_a_shorter_retry_after_does_not_shorten_the_schedule() -> None:
    assert classify(status(429, retry_after="1"), 2, SCHEDULE).retry_in_s == 300.0


def test_retry_after_on_other_statuses_is_ignored() -> None:
    assert classify(status(500, retry_after="1000"), 1, SCHEDULE).retry_in_s == 5.0
