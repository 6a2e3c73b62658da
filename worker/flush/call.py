"""The two calls to Bitrix24: imconnector.send.status.delivery, and the OAuth token refresh.

Every answer that is not a success becomes a `PortalError` with the `Outcome` its policy row names
(codes matched ignoring case, recorded in their canonical spelling). Redirects are never followed
here: a portal's 301/302/307/308 becomes a MOVED `PortalError` with its Location, and the caller
decides (worker/flush/request.py follows it once).
Tokens travel only in the request body or query string, never in an error message.

Every answer is read by `worker.net.answer.fetch`: bounded in size and time, its JSON guarded,
a rule broken a BAD_ANSWER PortalError. Every call goes through the session it is given
(`PortalStore.session` for portals, the refresh's own for OAuth), which judges each request's
URL and each connection's address by the rules of worker/net/trust.py before anything is sent
(worker/net/guard.py). The `time` block of an answer is advice: `reset_at_of` checks it.
"""

from __future__ import annotations

from typing import Any

import requests

from worker.errors import PortalError
from worker.flush.policy import REDIRECTS, Outcome, canonical, classify
from worker.net.answer import Answer, Timeouts, fetch, finite

__all__ = [
    "METHOD",
    "Timeouts",
    "error_from",
    "refresh_tokens",
    "reset_at_of",
    "send_status_delivery",
]

METHOD = "imconnector.send.status.delivery"
#: an `operating_reset_at` outside these Unix seconds is no time at all: ignored
RESET_AT_RANGE = (1.0e9, 1.0e10)


def reset_at_of(time_block: Any) -> float | None:
    """The `time` block's `operating_reset_at` when it is a sane Unix time, else None: the
    block is advice, and a value no float holds, NaN or 1e17 is ignored (the wait it asks for
    is capped again by the policy)."""
    if not isinstance(time_block, dict):
        return None
    return finite(time_block.get("operating_reset_at"), *RESET_AT_RANGE)


def error_from(answer: Answer, *, oauth: bool = False) -> PortalError:
    """The PortalError a failed answer stands for."""
    body = answer.body
    if body is None or not isinstance(body.get("error"), str):
        return PortalError(
            Outcome.TRANSIENT,
            "NON_JSON_RESPONSE",
            f"HTTP {answer.status} without a Bitrix24 error body",
            answer.status,
        )
    code = canonical(body["error"][:100], oauth=oauth)
    description = str(body.get("error_description", ""))[:300]
    outcome = classify(answer.status, code, oauth=oauth)
    return PortalError(outcome, code, description, answer.status, reset_at_of(body.get("time")))


def _moved(answer: Answer) -> PortalError:
    return PortalError(
        Outcome.MOVED,
        "PORTAL_MOVED",
        f"HTTP {answer.status} to another address",
        answer.status,
        location=answer.location,
    )


def send_status_delivery(
    endpoint: str,
    access_token: str,
    connector: str,
    line: int,
    messages: list[dict[str, Any]],
    timeouts: Timeouts,
    session: requests.Session,
) -> dict[str, Any]:
    """POST the batch; returns the answer's `time` block (advice: check before use).
    Raises PortalError."""
    body = {"CONNECTOR": connector, "LINE": line, "MESSAGES": messages, "auth": access_token}
    answer = fetch("POST", endpoint + METHOD, timeouts, session, json=body)
    if answer.status in REDIRECTS:
        raise _moved(answer)
    payload = answer.body
    result = payload.get("result") if payload is not None else None
    if answer.status == 200 and isinstance(result, dict) and result.get("SUCCESS") is True:
        time_block = payload.get("time") if payload is not None else None
        return time_block if isinstance(time_block, dict) else {}
    if answer.status == 200 and payload is not None and "error" not in payload:
        if isinstance(result, dict) and result.get("SUCCESS") is False:
            # older portals answered a failure so: permanent for this batch, not a retry loop
            raise PortalError(
                Outcome.PERMANENT, "SUCCESS_FALSE", "HTTP 200 with result.SUCCESS false", 200
            )
        raise PortalError(
            Outcome.TRANSIENT, "ERROR_UNEXPECTED_ANSWER", "HTTP 200 without result.SUCCESS", 200
        )
    raise error_from(answer)


def refresh_tokens(
    oauth_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    timeouts: Timeouts,
    session: requests.Session,
) -> dict[str, Any]:
    """Exchange a refresh token for a new pair. Raises PortalError (AuthBroken, Transient,
    BadAnswer: the OAuth server's answer is read within the same bounds as a portal's).

    An error body wins over the status: `wrong_client` may come with HTTP 200."""
    params = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    answer = fetch("GET", oauth_url, timeouts, session, params=params)
    payload = answer.body
    if payload is not None and isinstance(payload.get("error"), str):
        raise error_from(answer, oauth=True)
    if (
        answer.status == 200
        and payload is not None
        and isinstance(payload.get("access_token"), str)
        and isinstance(payload.get("refresh_token"), str)
    ):
        return payload
    if answer.status in REDIRECTS:
        # a token endpoint that redirects is not followed: the secret would go along
        raise PortalError(
            Outcome.TRANSIENT,
            "NON_JSON_RESPONSE",
            f"token endpoint answered a redirect (HTTP {answer.status}), not followed",
            answer.status,
        )
    raise PortalError(
        Outcome.TRANSIENT,
        "NON_JSON_RESPONSE",
        f"token endpoint answered HTTP {answer.status} without tokens",
        answer.status,
    )
