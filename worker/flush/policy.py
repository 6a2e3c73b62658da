"""The retry policy: every Bitrix24 outcome as a row of a table, and pure functions over it.

`classify` turns (HTTP status, error code) into an `Outcome`; `classify_command` does the same for
one command's error inside a `batch` answer, which has no HTTP status; `decide` turns an outcome
and a batch's history into a `Decision`, whose `Action` `settle.lua` carries out (an enum of the
store's, shared with Lua). None touches Redis or the network, so all are tested alone.

A known code decides alone, whatever the status, so a direct call and a command inside `batch`
reach the same outcome. The deliberate exceptions, inside `batch` only: a method refused there
(`NOT_PACKABLE`) turns packing off; a command beyond the platform's 50
(`ERROR_BATCH_LENGTH_EXCEEDED`) is sent again (`RESEND`), never dead-lettered. Rows that depend
on the status alone (an unknown code's 4xx, `SUCCESS: false`) can only apply to direct calls.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from worker.store.kinds import Action as Action  # decide() answers it: re-exported


class Outcome(enum.Enum):
    DONE = "done"
    THROTTLED = "throttled"  # 503 QUERY_LIMIT_EXCEEDED
    OPERATION_LIMIT = "operation_limit"  # 429 OPERATION_TIME_LIMIT
    AUTH = "auth"  # 401 expired_token, NO_AUTH_FOUND, invalid_token: refresh, retry at once
    AUTH_BROKEN = "auth_broken"  # the app lost the portal: park it until portal.register
    DENIED = "denied"  # a condition of the portal or app, or an address refused: park it
    CONNECTOR_BLOCKED = "connector_blocked"  # one connector of the portal: park its groups
    BLOCKED = "blocked"  # 503 OVERLOAD_LIMIT: park the portal for minutes
    CLOSED = "closed"  # PORTAL_DELETED: park for minutes, probe, dead-letter only when old
    MOVED = "moved"  # 301/302/307/308 + Location: follow once after the endpoint checks
    TRANSIENT = "transient"  # 5xx, network: backoff, capped attempts
    #: 401 CONNECTION_ERROR: the portal could not reach its OAuth server (not our token): back
    #: off, no refresh, never parked; dead-lettered only past DELIVERY_MAX_AGE_S
    UNREACHABLE = "unreachable"
    #: a stored token needs a key this worker lacks (DELIVERY_TOKEN_KEYS rollout): not the
    #: portal's failure, and another worker may hold the key: defer, never dead-letter
    KEY_MISSING = "key_missing"
    PERMANENT = "permanent"  # dead-letter now
    #: inside `batch` only: the method may not run there on this portal; packing off
    NOT_PACKABLE = "not_packable"
    #: inside `batch` only: the command was beyond the platform's 50; sent again, not a failure
    RESEND = "resend"
    #: an answer that breaks the rules (too large, too slow, unreadable, not an object, or a
    #: crash judging it): the portal's fault, counted on the portal (worker/net/answer.py)
    BAD_ANSWER = "bad_answer"


#: REST answers (docs/bitrix24.md): every code documented for the method and for any method, plus
#: those the official SDKs handle. Keys are the canonical spellings; matching ignores case.
REST_CODES: dict[str, tuple[int | None, Outcome]] = {
    # imconnector.send.status.delivery's own errors
    "WRONG_AUTH_TYPE": (403, Outcome.DENIED),  # to a direct call: the app's auth is not accepted
    "ERROR_ARGUMENT": (400, Outcome.PERMANENT),
    "IMCONNECTOR_NO_CORRECT_PROVIDER": (400, Outcome.CONNECTOR_BLOCKED),
    # the connector is not active on the portal (imconnector's input.php routing()): portal-wide
    # for that connector, whatever the line (the delivery path never checks the line)
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR": (400, Outcome.CONNECTOR_BLOCKED),
    "IMCONNECTOR_COULD_NOT_GET_PROVIDER_OBJECT": (400, Outcome.CONNECTOR_BLOCKED),
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_COMMAND": (400, Outcome.CONNECTOR_BLOCKED),
    # errors any method may return
    "INTERNAL_SERVER_ERROR": (500, Outcome.TRANSIENT),
    "ERROR_UNEXPECTED_ANSWER": (500, Outcome.TRANSIENT),
    "QUERY_LIMIT_EXCEEDED": (503, Outcome.THROTTLED),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, Outcome.PERMANENT),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, Outcome.PERMANENT),
    # refresh once; a token that a refresh for this very error produced and is refused again
    # means the app lost access (portals.refresh raises an AUTH_BROKEN PortalError then)
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
    # rest/lib/oauth/auth.php: the portal could not reach its authorization server (transient,
    # our token is fine), and the application is not known to the portal any more
    "CONNECTION_ERROR": (401, Outcome.UNREACHABLE),
    "APPLICATION_NOT_FOUND": (401, Outcome.AUTH_BROKEN),
    "PAYMENT_REQUIRED": (None, Outcome.DENIED),
    # the rest module throws it with 403, the docs list 500, b24pysdk expects 410
    "PORTAL_DELETED": (None, Outcome.CLOSED),
    "OPERATION_TIME_LIMIT": (429, Outcome.OPERATION_LIMIT),
    "NOT_INSTALLED": (None, Outcome.AUTH_BROKEN),
    "authorization_error": (None, Outcome.AUTH_BROKEN),
    "wrong_client": (None, Outcome.AUTH_BROKEN),
}

#: The token endpoint's answers to a refresh: the portal must reinstall or the app be fixed.
OAUTH_CODES: dict[str, tuple[int | None, Outcome]] = {
    "invalid_grant": (None, Outcome.AUTH_BROKEN),
    "invalid_client": (None, Outcome.AUTH_BROKEN),
    "invalid_request": (None, Outcome.AUTH_BROKEN),
    "invalid_scope": (None, Outcome.AUTH_BROKEN),
    "insufficient_scope": (None, Outcome.AUTH_BROKEN),
    "PAYMENT_REQUIRED": (None, Outcome.AUTH_BROKEN),
    "wrong_client": (None, Outcome.AUTH_BROKEN),  # b24pysdk: may come with HTTP 200
    "NOT_INSTALLED": (None, Outcome.AUTH_BROKEN),
    "authorization_error": (None, Outcome.AUTH_BROKEN),
}

#: Our own codes: what the worker itself concluded, each a parking or dead-letter reason.
OWN_CODES: dict[str, tuple[Outcome, str]] = {
    "NETWORK_ERROR": (Outcome.TRANSIENT, "timeout, reset or refused connection"),
    "NON_JSON_RESPONSE": (Outcome.TRANSIENT, "an answer that is not Bitrix24 JSON"),
    "SUCCESS_FALSE": (Outcome.PERMANENT, "HTTP 200 with result.SUCCESS false (older portals)"),
    "NO_CREDENTIALS": (Outcome.AUTH_BROKEN, "BITRIX24_CLIENT_ID/SECRET unset: cannot refresh"),
    "PORTAL_NOT_REGISTERED": (Outcome.AUTH_BROKEN, "no tokens stored for the portal"),
    "OAUTH_HOST_NOT_ALLOWED": (
        Outcome.DENIED,
        "the portal's server_endpoint is not in BITRIX24_OAUTH_HOSTS: the secret was not sent",
    ),
    "ENDPOINT_REFUSED": (
        Outcome.DENIED,
        "the endpoint (registered, from a refresh answer, or a redirect's) breaks the endpoint "
        "rules or resolves to a network DELIVERY_ALLOWED_ENDPOINT_NETWORKS does not allow",
    ),
    "UNSAFE_REDIRECT": (Outcome.DENIED, "the portal redirected to an address that was refused"),
    "TOKEN_KEY_MISSING": (
        Outcome.KEY_MISSING,
        "a stored token needs a key this worker lacks (DELIVERY_TOKEN_KEYS): another may hold it",
    ),
    "REFRESH_ANSWER_LOST": (
        Outcome.AUTH_BROKEN,
        "a refresh's answer was lost after the OAuth server spent the refresh token",
    ),
    "WAITING_FOR_TOKENS": (
        Outcome.AUTH_BROKEN,
        "token_owner producer: the token expired, fresh tokens were requested",
    ),
    "REDIRECTED_AGAIN": (Outcome.TRANSIENT, "the address a redirect named redirected too"),
    "LEASE_EXPIRED": (
        Outcome.TRANSIENT,
        "the group's flushers died holding its lease DELIVERY_MAX_ATTEMPTS times, never settling",
    ),
    # answers that break the rules (worker/net/answer.py): the portal's fault
    "ANSWER_TOO_LARGE": (
        Outcome.BAD_ANSWER,
        "the answer held more than DELIVERY_HTTP_MAX_ANSWER_BYTES, on the wire or decoded",
    ),
    "ANSWER_TOO_SLOW": (
        Outcome.BAD_ANSWER,
        "the answer was not complete within the call's total deadline "
        "(DELIVERY_HTTP_TOTAL_TIMEOUT_S, DELIVERY_OAUTH_TIMEOUT_S for a refresh)",
    ),
    "ANSWER_MALFORMED": (
        Outcome.BAD_ANSWER,
        "an HTTP 200 that is not JSON, JSON that is not an object, or JSON nested too deep",
    ),
    "ANSWER_ENCODING": (
        Outcome.BAD_ANSWER,
        "a Content-Encoding other than gzip or deflate, or a compressed body that is unreadable",
    ),
    "ANSWER_UNJUDGED": (Outcome.BAD_ANSWER, "judging the answer raised an exception"),
}

#: the label every error code outside the tables is counted under (counters, metric labels):
#: a portal never chooses how many series the fleet keeps; logs and dead letters keep the code
OTHER_CODE = "OTHER"

_REST = {code.casefold(): code for code in REST_CODES}
_OAUTH = {code.casefold(): code for code in OAUTH_CODES}
REDIRECTS = frozenset({301, 302, 307, 308})


def canonical(code: str, *, oauth: bool = False) -> str:
    """The code as the tables spell it (codes are matched ignoring case, as the SDKs do)."""
    folded = code.casefold()
    return (_OAUTH if oauth else _REST).get(folded) or _REST.get(folded) or code


def counted_code(code: str) -> str:
    """`code` as counters and metric labels name it: its canonical spelling when a table holds
    it, else OTHER_CODE."""
    name = canonical(code)
    if name in REST_CODES or name in OWN_CODES:
        return name
    return _OAUTH.get(code.casefold(), OTHER_CODE)


def classify(http_status: int | None, code: str, *, oauth: bool = False) -> Outcome:
    """The policy row of an answer (`oauth`: from the token endpoint). Unknown codes fall back
    on the HTTP status."""
    table, names = (OAUTH_CODES, _OAUTH) if oauth else (REST_CODES, _REST)
    name = names.get(code.casefold())
    if name is not None:
        return table[name][1]
    if code in OWN_CODES:
        return OWN_CODES[code][0]
    if http_status is None or http_status >= 500 or http_status in (408, 425):
        return Outcome.TRANSIENT
    if http_status in REDIRECTS:
        return Outcome.MOVED
    if http_status == 429:
        return Outcome.THROTTLED
    if oauth or http_status == 401:
        return Outcome.AUTH_BROKEN
    if 400 <= http_status < 500:
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


#: a command's error inside `batch` that differs from the same code on a direct call (see above)
BATCH_ONLY: dict[str, Outcome] = {
    # the platform's own code for refused methods; WRONG_AUTH_TYPE when a command does not
    # inherit the request's auth type; an unknown method where a direct call knows it
    "ERROR_BATCH_METHOD_NOT_ALLOWED": Outcome.NOT_PACKABLE,
    "WRONG_AUTH_TYPE": Outcome.NOT_PACKABLE,
    "ERROR_METHOD_NOT_FOUND": Outcome.NOT_PACKABLE,
    # rest_provider.php methodsBatch(): commands past the 50th are not run, only refused
    "ERROR_BATCH_LENGTH_EXCEEDED": Outcome.RESEND,
}
_BATCH_ONLY = {code.casefold(): outcome for code, outcome in BATCH_ONLY.items()}


def classify_command(code: str) -> Outcome:
    """The policy row of one command's error inside a `batch` answer (no HTTP status there): the
    code's own row, as on a direct call, except the `BATCH_ONLY` codes. An unknown code is
    transient (no status to tell more)."""
    return _BATCH_ONLY.get(code.casefold()) or classify(None, code)


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float
    max_attempts: int
    max_age_s: float
    overload_park_s: float
    operation_limit_wait_s: float
    #: rule-breaking answers in a row before the portal is parked (DELIVERY_MAX_BAD_ANSWERS)
    max_bad_answers: int = 3


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
    #: counts towards the portal's own key-missing backoff (never towards max_attempts)
    counts_key_wait: bool = False
    #: a rule-breaking answer: counted on the portal (in a row, until a success), one call in
    #: flight for it meanwhile; never on the batch, so never towards a dead letter
    bad_answer: bool = False


def compute_backoff(attempt: int, base_s: float, cap_s: float, rng: random.Random | None) -> float:
    """Exponential backoff with equal jitter: in [d/2, d], d = min(cap, base * 2**(attempt-1))."""
    # (the exponent is bounded: a count in the thousands would overflow a float)
    ceiling = min(cap_s, base_s * 2.0 ** min(max(0, attempt - 1), 256))
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


_PARKED = float("inf")
#: the longest wait a portal's `operating_reset_at` may ask for (the platform's window is 10 min)
MAX_RESET_WAIT_S = 3600.0
#: outcomes whose decision depends on nothing but the outcome
_FIXED = {
    Outcome.DONE: Decision(Action.DELIVERED),
    Outcome.AUTH: Decision(Action.REFRESH),
    Outcome.AUTH_BROKEN: Decision(Action.PARK, _PARKED, portal_wide=True),
    Outcome.DENIED: Decision(Action.PARK, _PARKED, portal_wide=True),
    Outcome.CONNECTOR_BLOCKED: Decision(Action.PARK_CONNECTOR, _PARKED),
    Outcome.PERMANENT: Decision(Action.DEAD_LETTER),
    # back at once, not a failure: the next flush of the group is a direct call
    Outcome.NOT_PACKABLE: Decision(Action.RETRY),
}


def _bad_answer(bad_answers: int, backoff: Backoff, rng: random.Random | None) -> Decision:
    """The portal's fault: its own count in a row parks it, items kept (never dead-lettered);
    until then the portal backs off (with one call in flight: begin.lua)."""
    if bad_answers + 1 >= backoff.max_bad_answers:
        return Decision(Action.PARK, _PARKED, portal_wide=True, bad_answer=True)
    delay = compute_backoff(bad_answers + 1, backoff.base_s, backoff.cap_s, rng)
    return Decision(Action.RETRY, delay, portal_wide=True, bad_answer=True)


def _ageless(
    outcome: Outcome,
    *,
    failures: int,
    key_waits: int,
    bad_answers: int,
    backoff: Backoff,
    rng: random.Random | None,
) -> Decision | None:
    """The decision of an outcome the batch's age does not change, else None."""
    if outcome is Outcome.KEY_MISSING:
        # whatever the age or the failures: a key rollout must never cost a confirmation
        delay = compute_backoff(key_waits + 1, backoff.base_s, backoff.cap_s, rng)
        return Decision(Action.RETRY, delay, counts_key_wait=True)
    if outcome is Outcome.BLOCKED:
        return Decision(Action.PARK, backoff.overload_park_s, portal_wide=True)
    if outcome is Outcome.BAD_ANSWER:
        return _bad_answer(bad_answers, backoff, rng)
    if outcome is Outcome.RESEND:
        # the platform did not run it: at once, then backing off if it keeps refusing
        delay = compute_backoff(failures, backoff.base_s, backoff.cap_s, rng) if failures else 0.0
        return Decision(Action.RETRY, delay, counts_failure=True)
    return None


def decide(
    outcome: Outcome,
    *,
    failures: int,
    throttles: int = 0,
    bad_answers: int = 0,
    age_s: float,
    backoff: Backoff,
    now: float,
    reset_at: float | None = None,
    rng: random.Random | None = None,
    key_waits: int = 0,
) -> Decision:
    """What to do with a batch after `outcome`.

    `failures` counts the batch's earlier transient failures, `throttles` the portal's throttled
    answers in a row before this one, `bad_answers` its rule-breaking answers in a row before
    this one, `age_s` the age of the batch's oldest item, `key_waits` the portal's flushes in a
    row deferred for a missing token key.
    """
    fixed = _FIXED.get(outcome)
    if fixed is not None:
        return fixed
    ageless = _ageless(
        outcome,
        failures=failures,
        key_waits=key_waits,
        bad_answers=bad_answers,
        backoff=backoff,
        rng=rng,
    )
    if ageless is not None:
        return ageless
    waits = (Outcome.THROTTLED, Outcome.OPERATION_LIMIT, Outcome.CLOSED, Outcome.UNREACHABLE)
    if outcome in waits and age_s >= backoff.max_age_s:
        return Decision(Action.DEAD_LETTER)
    if outcome is Outcome.CLOSED:
        # a closed public part may reopen: park, then one probe call; items kept until old
        return Decision(Action.PARK, backoff.overload_park_s, portal_wide=True)
    if outcome is Outcome.THROTTLED:
        delay = compute_backoff(throttles + 1, backoff.base_s, backoff.cap_s, rng)
        return Decision(Action.RETRY, delay, portal_wide=True, drain_budget=True)
    if outcome is Outcome.OPERATION_LIMIT:
        wait = reset_at - now if reset_at and reset_at > now else backoff.operation_limit_wait_s
        # the reset time is the portal's advice: never more than an hour ahead
        return Decision(Action.RETRY, min(wait, MAX_RESET_WAIT_S), portal_wide=True)
    return _counted(outcome, failures, backoff, rng)


def _counted(
    outcome: Outcome, failures: int, backoff: Backoff, rng: random.Random | None
) -> Decision:
    """The failures counted on the batch: an unreachable OAuth server of the portal's (no
    attempt limit), else transient (capped attempts, then a dead letter)."""
    delay = compute_backoff(failures + 1, backoff.base_s, backoff.cap_s, rng)
    if outcome is Outcome.UNREACHABLE:
        # the portal's side: every group of it waits, the count grows, no attempt limit
        return Decision(Action.RETRY, delay, portal_wide=True, counts_failure=True)
    # transient (and a redirect the flush could not follow: worker/flush/request.py follows one)
    if failures + 1 >= backoff.max_attempts:
        return Decision(Action.DEAD_LETTER, counts_failure=True)
    return Decision(Action.RETRY, delay, counts_failure=True)
