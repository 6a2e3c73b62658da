"""The retry policy as a pure function: every documented code, every row of its table."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.flush.call import reset_at_of
from worker.flush.policy import (
    BATCH_ONLY,
    MAX_RESET_WAIT_S,
    OAUTH_CODES,
    OTHER_CODE,
    OWN_CODES,
    REST_CODES,
    Action,
    Backoff,
    Decision,
    Outcome,
    canonical,
    classify,
    classify_command,
    compute_backoff,
    counted_code,
    decide,
)

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
    "WRONG_AUTH_TYPE": (403, Outcome.DENIED),
    "ERROR_ARGUMENT": (400, Outcome.PERMANENT),
    "IMCONNECTOR_NO_CORRECT_PROVIDER": (400, Outcome.CONNECTOR_BLOCKED),
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR": (400, Outcome.CONNECTOR_BLOCKED),
    "IMCONNECTOR_COULD_NOT_GET_PROVIDER_OBJECT": (400, Outcome.CONNECTOR_BLOCKED),
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_COMMAND": (400, Outcome.CONNECTOR_BLOCKED),
    "INTERNAL_SERVER_ERROR": (500, Outcome.TRANSIENT),
    "ERROR_UNEXPECTED_ANSWER": (500, Outcome.TRANSIENT),
    "QUERY_LIMIT_EXCEEDED": (503, Outcome.THROTTLED),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, Outcome.PERMANENT),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, Outcome.PERMANENT),
    "NO_AUTH_FOUND": (401, Outcome.AUTH),
    "invalid_token": (401, Outcome.AUTH),
    "INVALID_REQUEST": (400, Outcome.PERMANENT),
    "OVERLOAD_LIMIT": (503, Outcome.BLOCKED),
    "ACCESS_DENIED": (403, Outcome.DENIED),
    "INVALID_CREDENTIALS": (403, Outcome.DENIED),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (404, Outcome.PERMANENT),
    "insufficient_scope": (403, Outcome.DENIED),
    "expired_token": (401, Outcome.AUTH),
    "user_access_error": (403, Outcome.DENIED),
    "CONNECTION_ERROR": (401, Outcome.UNREACHABLE),
    "APPLICATION_NOT_FOUND": (401, Outcome.AUTH_BROKEN),
    "PAYMENT_REQUIRED": (None, Outcome.DENIED),
    "PORTAL_DELETED": (None, Outcome.CLOSED),
    "OPERATION_TIME_LIMIT": (429, Outcome.OPERATION_LIMIT),
    "NOT_INSTALLED": (None, Outcome.AUTH_BROKEN),
    "authorization_error": (None, Outcome.AUTH_BROKEN),
    "wrong_client": (None, Outcome.AUTH_BROKEN),
}
# the token endpoint's answers to a refresh
OAUTH = {
    "invalid_grant": Outcome.AUTH_BROKEN,
    "invalid_client": Outcome.AUTH_BROKEN,
    "invalid_request": Outcome.AUTH_BROKEN,
    "invalid_scope": Outcome.AUTH_BROKEN,
    "insufficient_scope": Outcome.AUTH_BROKEN,
    "PAYMENT_REQUIRED": Outcome.AUTH_BROKEN,
    "wrong_client": Outcome.AUTH_BROKEN,
    "NOT_INSTALLED": Outcome.AUTH_BROKEN,
    "authorization_error": Outcome.AUTH_BROKEN,
}


def test_every_row_is_documented_here_too() -> None:
    assert set(REST_CODES) == set(DOCUMENTED)


@pytest.mark.parametrize(("code", "expected"), sorted(DOCUMENTED.items()))
def test_every_documented_code_has_its_row(code: str, expected: tuple[int | None, Outcome]) -> None:
    status, outcome = expected
    assert REST_CODES[code] == expected
    assert classify(status, code) is outcome


@pytest.mark.parametrize(("code", "outcome"), sorted(OAUTH.items()))
def test_every_token_endpoint_code_parks(code: str, outcome: Outcome) -> None:
    assert OAUTH_CODES[code][1] is outcome
    for status in (200, 400, 401, 403):  # statuses are undocumented; wrong_client comes at 200
        assert classify(status, code, oauth=True) is outcome


@pytest.mark.parametrize("code", sorted(DOCUMENTED))
def test_codes_match_ignoring_case_and_keep_their_spelling(code: str) -> None:
    for variant in (code.lower(), code.upper(), code.swapcase()):
        assert classify(DOCUMENTED[code][0], variant) is DOCUMENTED[code][1]
        assert canonical(variant) == code


def test_rest_and_oauth_spellings_that_collide_keep_their_own_rows() -> None:
    assert classify(400, "INVALID_REQUEST") is Outcome.PERMANENT  # REST: https required
    assert classify(400, "invalid_request", oauth=True) is Outcome.AUTH_BROKEN
    assert canonical("INVALID_REQUEST", oauth=True) == "invalid_request"
    assert canonical("invalid_request") == "INVALID_REQUEST"
    assert classify(403, "insufficient_scope") is Outcome.DENIED


def test_own_codes_have_rows_and_reasons() -> None:
    assert classify(None, "SUCCESS_FALSE") is Outcome.PERMANENT
    assert classify(None, "OAUTH_HOST_NOT_ALLOWED") is Outcome.DENIED
    assert classify(None, "REFRESH_ANSWER_LOST") is Outcome.AUTH_BROKEN
    assert all(reason for _, reason in OWN_CODES.values())


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (502, Outcome.TRANSIENT),
        (None, Outcome.TRANSIENT),
        (429, Outcome.THROTTLED),
        (401, Outcome.AUTH_BROKEN),
        (418, Outcome.PERMANENT),
        (301, Outcome.MOVED),
        (302, Outcome.MOVED),
        (307, Outcome.MOVED),
        (308, Outcome.MOVED),
        (304, Outcome.TRANSIENT),
    ],
)
def test_unknown_codes_fall_back_on_the_status(status: int | None, outcome: Outcome) -> None:
    assert classify(status, "SOMETHING_NEW") is outcome


def test_unknown_token_endpoint_4xx_parks_rather_than_dead_letters() -> None:
    assert classify(400, "SOMETHING_NEW", oauth=True) is Outcome.AUTH_BROKEN
    assert classify(503, "SOMETHING_NEW", oauth=True) is Outcome.TRANSIENT


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


def test_conditions_of_the_portal_or_app_park_it_until_register() -> None:
    assert _decide(Outcome.DENIED) == (Action.PARK, float("inf"), True)


def test_conditions_of_one_connector_park_that_connector_only() -> None:
    assert _decide(Outcome.CONNECTOR_BLOCKED) == (Action.PARK_CONNECTOR, float("inf"), False)


def test_a_redirect_left_unfollowed_is_retried_as_transient() -> None:
    # the flush follows one redirect itself (worker/flush/request.py); one it could not follow
    # counts as a transient failure
    assert _decide(Outcome.MOVED)[0] is Action.RETRY


def test_portal_deleted_parks_for_the_overload_time_and_keeps_items_until_old() -> None:
    assert _decide(Outcome.CLOSED, failures=100) == (Action.PARK, 900.0, True)
    d = decide(Outcome.CLOSED, failures=0, age_s=1.0, backoff=BACKOFF, now=0)
    assert not d.counts_failure
    assert _decide(Outcome.CLOSED, age_s=3600.0)[0] is Action.DEAD_LETTER


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


# Inside `batch` a command's error has no HTTP status (rest_provider.php methodsBatch puts each
# command's {error, error_description} in result_error of an HTTP 200 answer).
BATCH_EXCEPTIONS = {
    "WRONG_AUTH_TYPE": Outcome.NOT_PACKABLE,
    "ERROR_BATCH_METHOD_NOT_ALLOWED": Outcome.NOT_PACKABLE,
    "ERROR_BATCH_LENGTH_EXCEEDED": Outcome.RESEND,
}


def _decision(outcome: Outcome, failures: int = 1, age_s: float = 10.0) -> Decision:
    return decide(
        outcome,
        failures=failures,
        age_s=age_s,
        backoff=BACKOFF,
        now=1000.0,
        reset_at=1042.0,
        rng=random.Random(7),
    )


@pytest.mark.parametrize("code", sorted(REST_CODES))
def test_every_row_reaches_the_same_decision_direct_and_inside_batch(code: str) -> None:
    status = REST_CODES[code][0]
    direct = classify(status, code)
    inside = classify_command(code)
    if code in BATCH_EXCEPTIONS:
        assert inside is BATCH_EXCEPTIONS[code]
        assert direct is REST_CODES[code][1]  # a direct call keeps the code's own row
        return
    assert inside is direct
    for failures, age_s in ((0, 1.0), (4, 10.0), (0, 3600.0)):
        assert _decision(direct, failures, age_s) == _decision(inside, failures, age_s)


def test_the_batch_exceptions_are_exactly_the_deliberate_ones() -> None:
    assert {c: o for c, o in BATCH_ONLY.items() if c in REST_CODES} == BATCH_EXCEPTIONS
    assert classify_command("error_method_not_found") is Outcome.NOT_PACKABLE


def test_status_only_rows_apply_to_direct_calls() -> None:
    # an unknown code: its status decides on a direct call; inside batch there is none
    assert classify(400, "SOMETHING_NEW") is Outcome.PERMANENT
    assert classify_command("SOMETHING_NEW") is Outcome.TRANSIENT
    assert classify(None, "SUCCESS_FALSE") is Outcome.PERMANENT  # the call's own code


def test_a_not_packable_command_goes_back_at_once_without_a_failure() -> None:
    d = _decision(Outcome.NOT_PACKABLE)
    assert d == Decision(Action.RETRY)


def test_a_command_beyond_the_fiftieth_is_sent_again_never_dead_lettered() -> None:
    assert _decision(Outcome.RESEND, failures=0) == Decision(Action.RETRY, 0.0, counts_failure=True)
    for failures in (1, 4, 5, 50):
        for age_s in (1.0, 3600.0, 1e9):
            d = _decision(Outcome.RESEND, failures, age_s)
            assert d.action is Action.RETRY and 0 < d.delay_s <= BACKOFF.cap_s


def test_connection_error_backs_off_portal_wide_without_refresh_or_parking() -> None:
    assert classify(401, "CONNECTION_ERROR") is Outcome.UNREACHABLE
    assert classify(401, "connection_error") is Outcome.UNREACHABLE
    for failures in (0, 4, 5, 100):  # no attempt limit: past max_attempts it still retries
        d = _decision(Outcome.UNREACHABLE, failures, age_s=BACKOFF.max_age_s - 1)
        assert d.action is Action.RETRY and d.portal_wide and d.counts_failure
        assert 0 < d.delay_s <= BACKOFF.cap_s
    assert _decision(Outcome.UNREACHABLE, 0, age_s=BACKOFF.max_age_s).action is Action.DEAD_LETTER


def test_application_not_found_parks_like_not_installed() -> None:
    assert _decision(classify(401, "APPLICATION_NOT_FOUND")) == _decision(
        classify(None, "NOT_INSTALLED")
    )


@given(st.text(max_size=120))
def test_any_command_code_has_a_row(code: str) -> None:
    assert isinstance(classify_command(code), Outcome)
    assert isinstance(_decision(classify_command(code)), Decision)


def test_a_reset_time_far_ahead_waits_an_hour_at_most() -> None:
    # an OPERATION_TIME_LIMIT reset time of 1e17 must not park a portal for ever
    assert _decide(Outcome.OPERATION_LIMIT, reset_at=1e17)[:2] == (Action.RETRY, MAX_RESET_WAIT_S)
    assert MAX_RESET_WAIT_S == 3600.0


def test_answers_that_break_the_rules_have_their_own_row_and_count() -> None:
    for code in ("ANSWER_TOO_LARGE", "ANSWER_TOO_SLOW", "ANSWER_MALFORMED", "ANSWER_ENCODING"):
        assert classify(200, code) is Outcome.BAD_ANSWER, code
    d = decide(Outcome.BAD_ANSWER, failures=0, age_s=1.0, backoff=BACKOFF, now=0)
    assert d.action is Action.RETRY and d.bad_answer and d.portal_wide
    assert not d.counts_failure, "counted on the portal, never towards a dead letter"
    assert 0.5 <= d.delay_s <= 1.0


def test_bad_answers_in_a_row_park_the_portal_with_its_items_kept() -> None:
    assert BACKOFF.max_bad_answers == 3
    second = decide(
        Outcome.BAD_ANSWER, failures=7, bad_answers=1, age_s=1e9, backoff=BACKOFF, now=0
    )
    assert second.action is Action.RETRY, "neither old items nor failures dead-letter it"
    third = decide(Outcome.BAD_ANSWER, failures=0, bad_answers=2, age_s=1.0, backoff=BACKOFF, now=0)
    assert (third.action, third.delay_s, third.portal_wide) == (Action.PARK, float("inf"), True)
    assert third.bad_answer


def test_counters_and_labels_name_known_codes_or_other() -> None:
    assert counted_code("query_limit_exceeded") == "QUERY_LIMIT_EXCEEDED"
    assert counted_code("invalid_grant") == "invalid_grant"
    assert counted_code("ANSWER_TOO_LARGE") == "ANSWER_TOO_LARGE"
    for chosen in ("MY_OWN_CODE_1", "x" * 100, "", "api_error:y"):
        assert counted_code(chosen) == OTHER_CODE


def test_a_time_block_is_advice_checked_before_use() -> None:
    assert reset_at_of({"operating_reset_at": 1773268500}) == 1773268500.0
    for bad in (1e17, float("inf"), float("nan"), 10**400, "1773268500", True, -1, None):
        assert reset_at_of({"operating_reset_at": bad}) is None, bad
    assert reset_at_of(42) is None and reset_at_of({}) is None
