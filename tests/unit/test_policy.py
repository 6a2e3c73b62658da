"""The retry policy as a pure function: every documented code, every row of its table."""

from __future__ import annotations

import random

import pytest

from worker.policy import CODES, Action, Backoff, Outcome, classify, compute_backoff, decide

BACKOFF = Backoff(
    base_s=1.0,
    cap_s=60.0,
    max_attempts=5,
    max_age_s=3600.0,
    overload_park_s=900.0,
    operation_limit_wait_s=60.0,
)

# docs/bitrix24.md, code by code: (HTTP status, the row of the retry table)
DOCUMENTED = {
    "WRONG_AUTH_TYPE": (403, Outcome.PERMANENT),
    "ERROR_ARGUMENT": (400, Outcome.PERMANENT),
    "IMCONNECTOR_NO_CORRECT_PROVIDER": (400, Outcome.PERMANENT),
    "INTERNAL_SERVER_ERROR": (500, Outcome.TRANSIENT),
    "ERROR_UNEXPECTED_ANSWER": (500, Outcome.TRANSIENT),
    "QUERY_LIMIT_EXCEEDED": (503, Outcome.THROTTLED),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, Outcome.PERMANENT),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, Outcome.PERMANENT),
    "NO_AUTH_FOUND": (401, Outcome.AUTH),
    "INVALID_REQUEST": (400, Outcome.PERMANENT),
    "OVERLOAD_LIMIT": (503, Outcome.BLOCKED),
    "ACCESS_DENIED": (403, Outcome.PERMANENT),
    "INVALID_CREDENTIALS": (403, Outcome.PERMANENT),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (404, Outcome.PERMANENT),
    "insufficient_scope": (403, Outcome.PERMANENT),
    "expired_token": (401, Outcome.AUTH),
    "user_access_error": (403, Outcome.PERMANENT),
    "PORTAL_DELETED": (500, Outcome.TRANSIENT),
    "OPERATION_TIME_LIMIT": (429, Outcome.OPERATION_LIMIT),
    "invalid_grant": (None, Outcome.AUTH_BROKEN),
    "invalid_client": (None, Outcome.AUTH_BROKEN),
    "invalid_request": (None, Outcome.AUTH_BROKEN),
    "invalid_scope": (None, Outcome.AUTH_BROKEN),
    "PAYMENT_REQUIRED": (None, Outcome.AUTH_BROKEN),
}


@pytest.mark.parametrize(("code", "expected"), sorted(DOCUMENTED.items()))
def test_every_documented_code_has_its_row(code: str, expected: tuple[int | None, Outcome]) -> None:
    status, outcome = expected
    assert CODES[code] == expected
    assert classify(status, code) is outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (502, Outcome.TRANSIENT),
        (None, Outcome.TRANSIENT),
        (429, Outcome.THROTTLED),
        (401, Outcome.AUTH_BROKEN),
        (418, Outcome.PERMANENT),
        (302, Outcome.TRANSIENT),
    ],
)
def test_unknown_codes_fall_back_on_the_status(status: int | None, outcome: Outcome) -> None:
    assert classify(status, "SOMETHING_NEW") is outcome


def _decide(outcome: Outcome, **kw: float) -> tuple[Action, float, bool]:
    d = decide(
        outcome,
        failures=int(kw.get("failures", 0)),
        throttles=int(kw.get("throttles", 0)),
        age_s=kw.get("age_s", 1.0),
        backoff=BACKOFF,
        now=1000.0,
        reset_at=kw.get("reset_at"),
        rng=random.Random(1),
    )
    return d.action, d.delay_s, d.portal_wide


def test_success_drops_the_lease() -> None:
    assert _decide(Outcome.DONE)[0] is Action.DELIVERED


def test_throttled_drains_the_budget_and_backs_off_with_no_attempt_limit() -> None:
    d = decide(
        Outcome.THROTTLED,
        failures=50,
        throttles=3,
        age_s=10,
        backoff=BACKOFF,
        now=0,
        rng=random.Random(1),
    )
    assert d.action is Action.RETRY and d.drain_budget and d.portal_wide
    assert 4.0 <= d.delay_s <= 8.0  # 2**3 * base, equal jitter
    assert not d.counts_failure


def test_throttled_items_past_max_age_are_dead_lettered() -> None:
    assert _decide(Outcome.THROTTLED, age_s=3600.0)[0] is Action.DEAD_LETTER


def test_expired_token_refreshes_and_retries() -> None:
    assert _decide(Outcome.AUTH)[0] is Action.REFRESH


def test_auth_broken_parks_the_portal_until_register() -> None:
    action, delay, portal_wide = _decide(Outcome.AUTH_BROKEN)
    assert action is Action.PARK and delay == float("inf") and portal_wide


def test_operation_limit_waits_until_reset() -> None:
    assert _decide(Outcome.OPERATION_LIMIT, reset_at=1042.0)[:2] == (Action.RETRY, 42.0)
    assert _decide(Outcome.OPERATION_LIMIT)[:2] == (Action.RETRY, 60.0)


def test_overload_parks_the_portal_for_minutes() -> None:
    assert _decide(Outcome.BLOCKED) == (Action.PARK, 900.0, True)


def test_transient_backs_off_then_dead_letters_after_max_attempts() -> None:
    action, delay, portal_wide = _decide(Outcome.TRANSIENT, failures=0)
    assert action is Action.RETRY and 0.5 <= delay <= 1.0 and not portal_wide
    assert _decide(Outcome.TRANSIENT, failures=4)[0] is Action.DEAD_LETTER


def test_permanent_dead_letters_at_once() -> None:
    assert _decide(Outcome.PERMANENT)[0] is Action.DEAD_LETTER


def test_backoff_grows_exponentially_within_the_cap() -> None:
    rng = random.Random(3)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= compute_backoff(attempt, 1.0, 60.0, rng) <= ceiling
