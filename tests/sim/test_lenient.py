"""imconnector.send.status.delivery as the portal checks it (the imconnector module source:
``lib/rest/customconnectors.php``, ``Connector::getConnectorRealId``), and the strict mode.

Facts checked: top-level parameter names are matched case-insensitively; MESSAGES element keys
are lowercased; the connector id is lowercased and cut at its first "."; ERROR_ARGUMENT only for a
missing or null CONNECTOR/LINE/MESSAGES; ``MESSAGES: []`` succeeds; element ids are not checked;
a connector not active on the portal answers IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR (400,
``lib/provider/base/input.php`` ``routing()``), while one switched off on a line still confirms
delivery (``receivingStatusDelivery`` reads no line).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from b24sim import METHOD, Credentials, PortalConfig, Simulator

from .conftest import call, payload


def test_lenient_is_the_default(sim: Simulator) -> None:
    assert sim.strict is False


def test_names_case_insensitive_and_element_keys_lowercased(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    body = {
        "auth": creds.access_token,
        "connector": "MyConnector.Sub",
        "Line": "107",
        "messages": [{"IM": {"chat_id": 1, "message_id": 2}, "Chat": {"id": "c"}}],
    }
    r = call(session, creds, body)
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {"SUCCESS": True, "DATA": []}
    (rec,) = sim.accepted("m1")
    assert (rec.connector, rec.line) == ("myconnector", 107)
    assert rec.im == {"chat_id": 1, "message_id": 2}
    assert rec.chat == {"id": "c"}


def test_form_encoded_lowercase_names(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    form = {
        "auth": creds.access_token,
        "connector": "myconnector",
        "line": "5",
        "messages[0][im][chat_id]": "1",
        "messages[0][im][message_id]": "9",
    }
    r = session.post(creds.client_endpoint + METHOD, data=form, timeout=5)
    assert r.status_code == 200, r.text
    assert sim.accepted("m1")[0].im == {"chat_id": "1", "message_id": "9"}


def test_empty_messages_succeed(
    sim: Simulator, creds: Credentials, session: requests.Session
) -> None:
    r = call(session, creds, payload(creds, MESSAGES=[]))
    assert (r.status_code, r.json()["result"]) == (200, {"SUCCESS": True, "DATA": []})
    assert sim.accepted() == []


LOOSE: list[tuple[str, dict[str, Any]]] = [
    ("line zero", {"LINE": 0}),
    ("line text", {"LINE": "abc"}),
    ("element not object", {"MESSAGES": [1]}),
    ("element without im", {"MESSAGES": [{"chat": {"id": "x"}}]}),
    ("im without ids", {"MESSAGES": [{"im": {}}]}),
    ("empty chat id", {"MESSAGES": [{"im": {"chat_id": "", "message_id": "no"}}]}),
    ("message id not array", {"MESSAGES": [{"im": {"chat_id": 1}, "message": {"id": "x"}}]}),
]


@pytest.mark.parametrize(("name", "override"), LOOSE, ids=[x[0] for x in LOOSE])
def test_elements_not_checked(
    sim: Simulator,
    creds: Credentials,
    session: requests.Session,
    name: str,
    override: dict[str, Any],
) -> None:
    """SUCCESS: true does not prove the ids exist; the same bodies fail in strict mode."""
    assert call(session, creds, payload(creds, **override)).status_code == 200, name
    sim.strict = True
    r = call(session, creds, payload(creds, **override))
    assert (r.status_code, r.json()["error"]) == (400, "ERROR_ARGUMENT")


@pytest.mark.parametrize("name", ["CONNECTOR", "LINE", "MESSAGES"])
def test_missing_or_null_is_error_argument(
    sim: Simulator, creds: Credentials, session: requests.Session, name: str
) -> None:
    for body in (payload(creds, **{name: None}), _without(payload(creds), name)):
        r = call(session, creds, body)
        assert r.status_code == 400
        assert r.json() == {
            "error": "ERROR_ARGUMENT",
            "error_description": f"Argument '{name}' is null or empty",
        }
    assert sim.counters("m1")["error_argument_400"] == 2


def test_messages_not_an_array(creds: Credentials, session: requests.Session) -> None:
    r = call(session, creds, payload(creds, MESSAGES="x"))
    assert (r.status_code, r.json()["error"]) == (400, "ERROR_ARGUMENT")


def _without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != name}


def test_a_connector_switched_off_on_a_line_still_confirms_delivery(
    sim: Simulator, session: requests.Session
) -> None:
    """imconnector receivingStatusDelivery has no line check (only receivingMessage answers
    IMCONNECTOR_NOT_ACTIVE_LINE): a delivery for a line whose connector is off succeeds."""
    c = sim.add_portal(
        PortalConfig(member_id="ln", connectors=["Telegram", "viber"], lines={3: ["TELEGRAM"]})
    )
    for connector, line in (("telegram.bot1", 3), ("viber", 3), ("telegram", 4)):
        r = call(session, c, payload(c, CONNECTOR=connector, LINE=line))
        assert (r.status_code, r.json()["result"]["SUCCESS"]) == (200, True)
    assert sim.counters("ln")["not_active_connector_400"] == 0


def test_a_connector_not_active_on_the_portal(sim: Simulator, session: requests.Session) -> None:
    """imconnector input.php routing(): a connector missing from the portal's list of active
    connectors (Connector::isConnector) answers IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR, on
    every line; one with no provider answers IMCONNECTOR_NO_CORRECT_PROVIDER."""
    c = sim.add_portal(
        PortalConfig(
            member_id="ac", connectors=["Telegram", "viber"], active_connectors=["TELEGRAM"]
        )
    )
    ok = call(session, c, payload(c, CONNECTOR="telegram.bot1", LINE=3))
    assert ok.status_code == 200
    for line in (3, 4):
        r = call(session, c, payload(c, CONNECTOR="viber", LINE=line))
        assert r.status_code == 400
        assert r.json() == {
            "error": "IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR",
            "error_description": "Connector not specified",
        }
    unknown = call(session, c, payload(c, CONNECTOR="whatsapp", LINE=3))
    assert unknown.json()["error"] == "IMCONNECTOR_NO_CORRECT_PROVIDER"
    counters = sim.counters("ac")
    assert (counters["not_active_connector_400"], counters["no_provider_400"]) == (2, 1)


def test_lines_from_control_endpoint(sim: Simulator, session: requests.Session) -> None:
    r = session.post(
        f"{sim.base_url}/_sim/portals",
        json={"member_id": "lj", "lines": {"7": ["a"]}},
        timeout=5,
    )
    assert r.status_code == 200
    assert sim.portal_config("lj").lines == {7: ["a"]}


def test_strict_constructor_flag() -> None:
    with Simulator(strict=True) as sim, requests.Session() as s:
        c = sim.add_portal(PortalConfig(member_id="s"))
        r = call(s, c, payload(c, MESSAGES=[]))
        assert (r.status_code, r.json()["error"]) == (400, "ERROR_ARGUMENT")
        assert sim.state(records=False)["strict"] is True
