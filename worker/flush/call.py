"""The two calls to Bitrix24: imconnector.send.status.delivery, and the OAuth token refresh.

Every answer that is not a success becomes a `PortalError` with the `Outcome` its policy row names
(codes matched ignoring case, recorded in their canonical spelling). Redirects are never followed
here: a portal's 301/302/307/308 becomes a MOVED `PortalError` with its Location, and the caller
decides (worker/flush/request.py follows it once).
Tokens travel only in the request body or query string, never in an error message.

Every call goes through the session it is given (`PortalStore.session` for portals, the refresh's
own for OAuth), which judges each request's URL and each connection's address by the rules of
worker/net/trust.py before anything is sent (worker/net/guard.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from worker.errors import PortalError
from worker.flush.policy import REDIRECTS, Outcome, canonical, classify
from worker.net.trust import EndpointRefused

METHOD = "imconnector.send.status.delivery"


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float


def error_from(response: requests.Response, body: Any, *, oauth: bool = False) -> PortalError:
    """The PortalError a failed answer stands for (`body`: its JSON, or None)."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return PortalError(
            Outcome.TRANSIENT,
            "NON_JSON_RESPONSE",
            f"HTTP {response.status_code} without a Bitrix24 error body",
            response.status_code,
        )
    code = canonical(body["error"][:100], oauth=oauth)
    description = str(body.get("error_description", ""))[:300]
    reset_at = None
    time_block = body.get("time")
    if isinstance(time_block, dict) and isinstance(
        time_block.get("operating_reset_at"), int | float
    ):
        reset_at = float(time_block["operating_reset_at"])
    outcome = classify(response.status_code, code, oauth=oauth)
    return PortalError(outcome, code, description, response.status_code, reset_at)


def _moved(response: requests.Response) -> PortalError:
    location = response.headers.get("Location", "")[:2048]
    return PortalError(
        Outcome.MOVED,
        "PORTAL_MOVED",
        f"HTTP {response.status_code} to another address",
        response.status_code,
        location=location,
    )


def request(
    method: str, url: str, timeouts: Timeouts, session: requests.Session, **kwargs: Any
) -> requests.Response:
    """One call; a network failure becomes a TRANSIENT PortalError, named by its class only
    (the URL may carry secrets in its query string). The session judges the URL and every
    connection (worker/net/guard.py); a refused one parks the portal (ENDPOINT_REFUSED)."""
    try:
        return session.request(
            method,
            url,
            timeout=(timeouts.connect_s, timeouts.read_s),
            allow_redirects=False,
            **kwargs,
        )
    except EndpointRefused as exc:
        raise PortalError(Outcome.DENIED, "ENDPOINT_REFUSED", str(exc)[:300]) from None
    except requests.RequestException as exc:
        raise PortalError(Outcome.TRANSIENT, "NETWORK_ERROR", type(exc).__name__) from None


def read_json(response: requests.Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def send_status_delivery(
    endpoint: str,
    access_token: str,
    connector: str,
    line: int,
    messages: list[dict[str, Any]],
    timeouts: Timeouts,
    session: requests.Session,
) -> dict[str, Any]:
    """POST the batch; returns the answer's `time` block. Raises PortalError."""
    body = {"CONNECTOR": connector, "LINE": line, "MESSAGES": messages, "auth": access_token}
    response = request("POST", endpoint + METHOD, timeouts, session, json=body)
    if response.status_code in REDIRECTS:
        raise _moved(response)
    payload = read_json(response)
    result = payload.get("result") if isinstance(payload, dict) else None
    if response.status_code == 200 and isinstance(result, dict) and result.get("SUCCESS") is True:
        time_block = payload.get("time")
        return time_block if isinstance(time_block, dict) else {}
    if response.status_code == 200 and isinstance(payload, dict) and "error" not in payload:
        if isinstance(result, dict) and result.get("SUCCESS") is False:
            # older portals answered a failure so: permanent for this batch, not a retry loop
            raise PortalError(
                Outcome.PERMANENT, "SUCCESS_FALSE", "HTTP 200 with result.SUCCESS false", 200
            )
        raise PortalError(
            Outcome.TRANSIENT, "ERROR_UNEXPECTED_ANSWER", "HTTP 200 without result.SUCCESS", 200
        )
    raise error_from(response, payload)


def refresh_tokens(
    oauth_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    timeouts: Timeouts,
    session: requests.Session,
) -> dict[str, Any]:
    """Exchange a refresh token for a new pair. Raises PortalError (AUTH_BROKEN, TRANSIENT, ...).

    An error body wins over the status: `wrong_client` may come with HTTP 200."""
    params = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    response = request("GET", oauth_url, timeouts, session, params=params)
    payload = read_json(response)
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        raise error_from(response, payload, oauth=True)
    if (
        response.status_code == 200
        and isinstance(payload, dict)
        and isinstance(payload.get("access_token"), str)
        and isinstance(payload.get("refresh_token"), str)
    ):
        return payload
    if response.status_code in REDIRECTS:
        # a token endpoint that redirects is not followed: the secret would go along
        raise PortalError(
            Outcome.TRANSIENT,
            "NON_JSON_RESPONSE",
            f"token endpoint answered a redirect (HTTP {response.status_code}), not followed",
            response.status_code,
        )
    raise PortalError(
        Outcome.TRANSIENT,
        "NON_JSON_RESPONSE",
        f"token endpoint answered HTTP {response.status_code} without tokens",
        response.status_code,
    )
