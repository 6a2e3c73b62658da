"""imconnector.send.status.delivery: success shape, parameter forms, ERROR_ARGUMENT and friends."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from b24sim import METHOD, Credentials, PortalConfig, Simulator

from .conftest import TIME_KEYS, call, payload


def test_success_shape(creds: Credentials, session: requests.Session) -> None:
    r = call(session, creds)
    assert r.status_code == 200
    data = r.json()
    assert data["result"] == {"SUCCESS": True, "DATA": []}
    assert set(data["time"]) == TIME_KEYS
    assert data["time"]["finish"] >= data["time"]["start"]


def test_form_encoded_php_keys(sim: Simulator, creds: Credentials) -> None:
    form = {
        "auth": creds.access_token,
        "CONNECTOR": "myconnector",
        "LINE": "107",
        "MESSAGES[0][im][chat_id]": "323",
        "MESSAGES[0][im][message_id]": "1",
        "MESSAGES[0][message][id][0]": "ext-1",
        "MESSAGES[0][message][date]": "1738065600",
        "MESSAGES[1][im][chat_id]": "323",
        "MESSAGES[1][im][message_id]": "2",
    }
    with requests.Session() as session:
        r = session.post(creds.client_endpoint + METHOD, data=form, timeout=5)
        assert r.status_code == 200, r.text
        q = session.post(creds.client_endpoint + METHOD, params=form, timeout=5)
        assert q.status_code == 200, q.text
        # JSON body with the token in the query string
        j = session.post(
            creds.client_endpoint + METHOD,
            params={"auth": creds.access_token},
            json=payload(None),
            timeout=5,
        )
        assert j.status_code == 200, j.text
    recs = sim.accepted("m1")
    assert [r.im["message_id"] for r in recs[:2]] == ["1", "2"]
    assert recs[0].message == {"id": ["ext-1"], "date": "1738065600"}
    assert recs[0].line == 107
    assert recs[0].batch_size == 2


BAD: list[tuple[str, dict[str, Any]]] = [
    ("no connector", {"CONNECTOR": None}),
    ("empty connector", {"CONNECTOR": ""}),
    ("connector not string", {"CONNECTOR": 5}),
    ("no line", {"LINE": None}),
    ("line zero", {"LINE": 0}),
    ("line text", {"LINE": "abc"}),
    ("line bool", {"LINE": True}),
    ("no messages", {"MESSAGES": None}),
    ("empty messages", {"MESSAGES": []}),
    ("messages object", {"MESSAGES": {"im": {}}}),
    ("element not object", {"MESSAGES": [1]}),
    ("element without im", {"MESSAGES": [{"chat": {"id": "x"}}]}),
    ("im not object", {"MESSAGES": [{"im": 5}]}),
    ("im without chat_id", {"MESSAGES": [{"im": {"message_id": 1}}]}),
    ("im without message_id", {"MESSAGES": [{"im": {"chat_id": 1}}]}),
    ("message not object", {"MESSAGES": [{"im": {"chat_id": 1, "message_id": 1}, "message": 3}]}),
    (
        "message id not array",
        {"MESSAGES": [{"im": {"chat_id": 1, "message_id": 1}, "message": {"id": "x"}}]},
    ),
    (
        "message date text",
        {"MESSAGES": [{"im": {"chat_id": 1, "message_id": 1}, "message": {"date": "soon"}}]},
    ),
    ("chat without id", {"MESSAGES": [{"im": {"chat_id": 1, "message_id": 1}, "chat": {}}]}),
]


@pytest.mark.parametrize(("name", "override"), BAD, ids=[b[0] for b in BAD])
def test_error_argument(
    sim: Simulator,
    creds: Credentials,
    session: requests.Session,
    name: str,
    override: dict[str, Any],
) -> None:
    """Strict mode: today's spec checks of every element (the portal itself is lenient)."""
    sim.strict = True
    r = call(session, creds, payload(creds, **override))
    assert r.status_code == 400, name
    assert r.json()["error"] == "ERROR_ARGUMENT"
    assert set(r.json()) == {"error", "error_description"}
    assert sim.accepted() == []
    assert sim.counters("m1")["error_argument_400"] == 1


def test_minimal_element_and_string_line(creds: Credentials, session: requests.Session) -> None:
    body = payload(creds, LINE="7", MESSAGES=[{"im": {"chat_id": 1, "message_id": 2}}])
    assert call(session, creds, body).status_code == 200


def test_no_correct_provider(sim: Simulator, session: requests.Session) -> None:
    c = sim.add_portal(PortalConfig(member_id="m2", connectors=["telegram"]))
    r = call(session, c, payload(c, CONNECTOR="viber"))
    assert r.status_code == 400
    assert r.json()["error"] == "IMCONNECTOR_NO_CORRECT_PROVIDER"
    assert call(session, c, payload(c, CONNECTOR="telegram")).status_code == 200
    assert sim.counters("m2")["no_provider_400"] == 1


def test_wrong_auth_type_webhook(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = session.post(f"{sim.base_url}/rest/1/abcdef/{METHOD}", json=payload(None), timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "WRONG_AUTH_TYPE")
    r = session.post(f"{sim.base_url}/m1/rest/1/abcdef/{METHOD}", json=payload(None), timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "WRONG_AUTH_TYPE")
    token = sim.webhook_token("m1")
    r = session.post(creds.client_endpoint + METHOD, json=payload(None, auth=token), timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "WRONG_AUTH_TYPE")
    assert sim.counters("m1")["wrong_auth_type_403"] == 2


def test_unknown_method_and_portal(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = session.post(creds.client_endpoint + "im.message.add", json=payload(creds), timeout=5)
    assert r.status_code == 404
    r = session.post(f"{sim.base_url}/nope/rest/{METHOD}", json=payload(creds), timeout=5)
    assert r.status_code == 404


def test_method_name_json_suffix(creds: Credentials, session: requests.Session) -> None:
    r = session.post(creds.client_endpoint + METHOD + ".json", json=payload(creds), timeout=5)
    assert r.status_code == 200


def test_operation_time_limit(sim: Simulator, session: requests.Session) -> None:
    cfg = PortalConfig(
        member_id="op",
        operating_per_call_s=1.0,
        operating_limit_s=2.5,
        operating_bucket_s=0.02,
        rate_per_s=1000,
        burst=1000,
    )
    c = sim.add_portal(cfg)
    times = [call(session, c).json()["time"] for _ in range(3)]  # 1, 2, 3 > 2.5
    assert [t["operating"] for t in times] == pytest.approx([1.0, 2.0, 3.0])
    r = call(session, c)
    assert r.status_code == 429
    # limits.md: the 429 body has no time block; the wait is the last success's reset_at
    assert set(r.json()) == {"error", "error_description"}
    assert r.json()["error"] == "OPERATION_TIME_LIMIT"
    reset_at = times[-1]["operating_reset_at"]
    assert time.time() < reset_at <= time.time() + 10 * 0.02 + 0.01
    # poll (no fixed sleep) until the window frees up; it must not free before reset_at
    deadline = time.time() + 5
    while True:
        r = call(session, c)
        if r.status_code == 200:
            break
        assert r.status_code == 429
        assert time.time() < deadline
    assert time.time() >= reset_at - 0.001
    assert sim.counters("op")["operation_limit_429"] >= 1
