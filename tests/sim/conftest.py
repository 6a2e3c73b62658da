"""Fixtures for the b24sim tests: a running simulator, a portal, a requests session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from b24sim import METHOD, Credentials, PortalConfig, Simulator

CLIENT_ID = "app.test"
CLIENT_SECRET = "s3cret"

# The fields of the OAuth server's answer to a token refresh.
REFRESH_KEYS = {
    "access_token",
    "refresh_token",
    "expires",
    "expires_in",
    "member_id",
    "client_endpoint",
    "server_endpoint",
    "domain",
    "scope",
    "status",
    "user_id",
}

# The fields of a REST answer's "time" block (per call, and per command in a batch).
TIME_KEYS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating_reset_at",
    "operating",
}


def payload(creds: Credentials | None, n: int = 1, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "CONNECTOR": "myconnector",
        "LINE": 107,
        "MESSAGES": [
            {
                "im": {"chat_id": 323, "message_id": 85911 + i},
                "message": {"id": [f"ext-{i}"], "date": 1738065600},
                "chat": {"id": "channel-123"},
            }
            for i in range(n)
        ],
    }
    if creds is not None:
        body["auth"] = creds.access_token
    body.update(over)
    return body


def call(
    session: requests.Session, creds: Credentials, body: dict[str, Any] | None = None
) -> requests.Response:
    return session.post(
        creds.client_endpoint + METHOD, json=payload(creds) if body is None else body, timeout=10
    )


def refresh(
    session: requests.Session, sim: Simulator, refresh_token: str, **over: str
) -> requests.Response:
    params = {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token,
    }
    params.update(over)
    return session.get(sim.oauth_url, params=params, timeout=10)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=1234) as s:
        yield s


@pytest.fixture
def creds(sim: Simulator) -> Credentials:
    return sim.add_portal(PortalConfig(member_id="m1", domain="m1.example"))


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s
