"""The retry policy: every Bitrix24 outcome as a row of a table, and pure functions over it.

`classify` turns (HTTP status, error code) into an `Outcome`; `decide` turns an outcome and a
batch's history into a `Decision`. Neither touches Redis or the network, so both are tested alone.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Outcome(enum.Enum):
    DONE = "done"
    THROTTLED = "throttled"  # 503 QUERY_LIMIT_EXCEEDED
    OPERATION_LIMIT = "operation_limit"  # 429 OPERATION_TIME_LIMIT
    AUTH = "auth"  # 401 expired_token: refresh, retry at once
    AUTH_BROKEN = "auth_broken"  # park the portal until portal.register
    BLOCKED = "blocked"  # 503 OVERLOAD_LIMIT: park the portal for minutes
    TRANSIENT = "transient"  # 5xx, network: backoff, capped attempts
    PERMANENT = "permanent"  # dead-letter now


#: Every documented error code (docs/bitrix24.md), with its HTTP status and its policy row.
CODES: dict[str, tuple[int | None, Outcome]] = {
    # imconnector.send.status.delivery's own errors
    "WRONG_AUTH_TYPE": (403, Outcome.PERMANENT),
    "ERROR_ARGUMENT": (400, Outcome.PERMANENT),
    "IMCONNECTOR_NO_CORRECT_PROVIDER": (400, Outcome.PERMANENT),
    # errors any method may return
    "INTERNAL_SERVER_ERROR": (500, Outcome.TRANSIENT),
    "ERROR_UNEXPECTED_ANSWER": (500, Outcome.TRANSIENT),
    "QUERY_LIMIT_EXCEEDED": (503, Outcome.THROTTLED),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, Outcome.PERMANENT),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, Outcome.PERMANENT),
    # refresh once; a token that a refresh for this very error produced and is refused again
    # means the app lost access (portals.refresh raises an AUTH_BROKEN PortalError then)
    "NO_AUTH_FOUND": (401, Outcome.AUTH),
    "INVALID_REQUEST": (400, Outcome.PERMANENT),
    "OVERLOAD_LIMIT": (503, Outcome.BLOCKED),
    "ACCESS_DENIED": (403, Outcome.PERMANENT),
    "INVALID_CREDENTIALS": (403, Outcome.PERMANENT),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (404, Outcome.PERMANENT),
    "insufficient_scope": (403, Outcome.PERMANENT),
    "expired_token": (401, Outcome.AUTH),
    "user_access_error": (403, Outcome.PERMANENT),
    # a closed public part may reopen: retried, then dead-lettered after max attempts
    "PORTAL_DELETED": (500, Outcome.TRANSIENT),
    "OPERATION_TIME_LIMIT": (429, Outcome.OPERATION_LIMIT),
    # the OAuth server's errors on refresh: the portal must reinstall or the app be fixed
    "invalid_grant": (None, Outcome.AUTH_BROKEN),
    "invalid_client": (None, Outcome.AUTH_BROKEN),
    "invalid_request": (None, Outcome.AUTH_BROKEN),
    "invalid_scope": (None, Outcome.AUTH_BROKEN),
    "PAYMENT_REQUIRED": (None, Outcome.AUTH_BROKEN),
    # ours: network failures and bodies that are not Bitrix24 JSON
    "NETWORK_ERROR": (None, Outcome.TRANSIENT),
    "NON_JSON_RESPONSE": (None, Outcome.TRANSIENT),
    "NO_CREDENTIALS": (None, Outcome.AUTH_BROKEN),
    "PORTAL_NOT_REGISTERED": (None, Outcome.AUTH_BROKEN),
}


def classify(http_status: int | None, code: str) -> Outcome:
    """The policy row of an answer. Unknown codes fall back on the HTTP status."""
    if code in CODES:
        return CODES[code][1]
    if http_status is None or http_status >= 500 or http_status in (408, 425):
        return Outcome.TRANSIENT
    if http_status == 429:
        return Outcome.THROTTLED
    if http_status == 401:
        return Outcome.AUTH_BROKEN
    if 400 <= http_status < 500:
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


class Action(enum.Enum):
    DELIVERED = "delivered"  # drop the lease
    RETRY = "retry"  # return the items, try the group again after delay_s
    REFRESH = "refresh"  # single-flight token refresh, then retry at once
    PARK = "park"  # block the whole portal for delay_s (inf: until portal.register)
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float
    max_attempts: int
    max_age_s: float
    overload_park_s: float
    operation_limit_wait_s: float


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    #: the wait applies to every group of the portal (rate budget, operating time, parking)
    portal_wide: bool = False
    #: counts towards max_attempts
    counts_failure: bool = False
    #: empty the portal's fleet-wide rate budget
    drain_budget: bool = False


def compute_backoff(attempt: int, base_s: float, cap_s: float, rng: random.Random | None) -> float:
    """Exponential backoff with equal jitter: in [d/2, d], d = min(cap, base * 2**(attempt-1))."""
    ceiling = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


def decide(
    outcome: Outcome,
    *,
    failures: int,
    throttles: int = 0,
    age_s: float,
    backoff: Backoff,
    now: float,
    reset_at: float | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """What to do with a batch after `outcome`.

    `failures` counts the batch's earlier transient failures, `throttles` the portal's throttled
    answers in a row before this one, `age_s` the age of the batch's oldest item.
    """
    if outcome is Outcome.DONE:
        return Decision(Action.DELIVERED)
    if outcome is Outcome.AUTH:
        return Decision(Action.REFRESH)
    if outcome is Outcome.AUTH_BROKEN:
        return Decision(Action.PARK, float("inf"), portal_wide=True)
    if outcome is Outcome.BLOCKED:
        return Decision(Action.PARK, backoff.overload_park_s, portal_wide=True)
    if outcome is Outcome.PERMANENT:
        return Decision(Action.DEAD_LETTER)
    if outcome in (Outcome.THROTTLED, Outcome.OPERATION_LIMIT) and age_s >= backoff.max_age_s:
        return Decision(Action.DEAD_LETTER)
    if outcome is Outcome.THROTTLED:
        delay = compute_backoff(throttles + 1, backoff.base_s, backoff.cap_s, rng)
        return Decision(Action.RETRY, delay, portal_wide=True, drain_budget=True)
    if outcome is Outcome.OPERATION_LIMIT:
        wait = reset_at - now if reset_at and reset_at > now else backoff.operation_limit_wait_s
        return Decision(Action.RETRY, wait, portal_wide=True)
    # transient
    if failures + 1 >= backoff.max_attempts:
        return Decision(Action.DEAD_LETTER, counts_failure=True)
    delay = compute_backoff(failures + 1, backoff.base_s, backoff.cap_s, rng)
    return Decision(Action.RETRY, delay, counts_failure=True)
