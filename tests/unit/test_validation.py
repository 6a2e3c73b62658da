"""Payload rules: each rejection names the field and the rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.harness import confirmation as payload
from worker.errors import InvalidInput
from worker.ingest.validation import confirmation, registration


def test_a_valid_confirmation_is_normalised() -> None:
    c = confirmation(payload("p1", 85911, line="107", message={"id": "ext-1", "date": 1}))
    assert c.group.id == "p1:myconnector:107" and c.message_id == "85911"
    assert c.element["message"] == {"id": ["ext-1"], "date": 1}  # plain string id wrapped
    assert c.element["im"] == {"chat_id": 323, "message_id": 85911}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"line": 0}, "line must be a positive integer"),
        ({"line": True}, "line must be a positive integer"),
        ({"line": -3}, "line must be a positive integer"),
        ({"connector": ""}, "connector must be 1 to 64 characters"),
        ({"portal": "a:b"}, "portal must be 1 to 64 characters"),
        ({"im": "x"}, "im must be an object"),
        ({"im": {"chat_id": 1}}, "im.message_id is required"),
        ({"im": {"chat_id": 1, "message_id": "abc"}}, "im.message_id must be a positive integer"),
        ({"message": {"id": []}}, "message.id must be a non-empty array"),
        ({"message": {"id": [1]}}, "message.id must be a non-empty array"),
        ({"message": {"date": "yesterday"}}, "message.date must be Unix seconds"),
        ({"chat": {"id": ""}}, "chat.id must be a non-empty string"),
        ({"chat": {}}, "chat.id is required when chat is given"),
        ({"auth": "x"}, "auth is not a known field"),
    ],
)
def test_invalid_confirmations_name_field_and_rule(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        confirmation({**payload("p1", 1), **change})
    assert str(info.value).startswith(message)


def test_message_id_is_optional_unless_required() -> None:
    """The method's spec makes `message` optional; DELIVERY_REQUIRE_MESSAGE_ID=1 refuses a
    confirmation without message.id, naming the field and the rule."""
    bare = {k: v for k, v in payload("p1", 1).items() if k != "message"}
    dated = {**bare, "message": {"date": 1738065600}}
    for body in (bare, dated, {**bare, "message": None}):
        assert not confirmation(body).has_message_id
        with pytest.raises(InvalidInput) as info:
            confirmation(body, require_message_id=True)
        assert info.value.field == "message.id"
        assert "DELIVERY_REQUIRE_MESSAGE_ID=1" in str(info.value)
        assert str(info.value).startswith("message.id is required")
    full = confirmation(payload("p1", 1), require_message_id=True)
    assert full.has_message_id and full.element["message"]["id"] == ["ext-1"]


@given(st.dictionaries(st.sampled_from(["id", "date", "x"]), st.none() | st.integers() | st.text()))
def test_require_message_id_returns_or_names_the_field(message: dict[str, Any]) -> None:
    body = {**payload("p1", 1), "message": message}
    try:
        got = confirmation(body, require_message_id=True)
    except InvalidInput as exc:
        field = exc.field
    else:
        field = ""
        assert got.has_message_id
    assert field == "" or field.startswith("message")


def test_missing_required_fields() -> None:
    for field in ("portal", "connector", "line", "im"):
        body = payload("p1", 1)
        del body[field]
        with pytest.raises(InvalidInput, match=rf"^{field} is required"):
            confirmation(body)


AUTH = {
    "member_id": "m1",
    "domain": "m1.example",
    "client_endpoint": "https://m1.example/rest/",
    "access_token": "a",
    "refresh_token": "r",
    "expires_in": 3600,
}


@pytest.mark.parametrize(
    "endpoint", ["http://m1.example/rest/", "ftp://m1.example/", "not a url", "https://u:p@x/rest/"]
)
def test_registration_refuses_unsafe_endpoints(endpoint: str) -> None:
    with pytest.raises(InvalidInput, match=r"^client_endpoint "):
        registration({**AUTH, "client_endpoint": endpoint})


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8080/x/rest/",
        "http://localhost/rest",
        "http://[::1]:9/rest/",
        "https://m1.example/rest/",
    ],
)
def test_registration_accepts_https_and_loopback(endpoint: str) -> None:
    dev = frozenset({"public", "loopback"})
    reg = registration({**AUTH, "client_endpoint": endpoint}, dev)
    assert reg.client_endpoint.endswith("/")


def test_the_workers_networks_apply_at_registration() -> None:
    """Without networks (a producer checking before it sends) only what no network allows is
    refused; the worker passes DELIVERY_ALLOWED_ENDPOINT_NETWORKS."""
    public = frozenset({"public"})
    assert registration({**AUTH, "client_endpoint": "http://127.0.0.1:9/x/rest/"})
    for endpoint, rule in [
        ("http://127.0.0.1:9/x/rest/", "when loopback is allowed"),
        ("https://10.0.0.5/rest/", "is private"),
    ]:
        with pytest.raises(InvalidInput, match=f"^client_endpoint .*{rule}"):
            registration({**AUTH, "client_endpoint": endpoint}, public)
    with pytest.raises(InvalidInput, match="never receives tokens"):
        registration({**AUTH, "client_endpoint": "https://169.254.169.254/rest/"})


def test_registration_keeps_server_endpoint_and_token_owner() -> None:
    reg = registration(
        {**AUTH, "server_endpoint": "https://oauth.bitrix24.tech/rest/", "token_owner": "producer"}
    )
    assert reg.server_endpoint == "https://oauth.bitrix24.tech/rest/"
    assert reg.token_owner == "producer"
    default = registration(AUTH)
    assert default.server_endpoint is None and default.token_owner == "worker"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"server_endpoint": "http://oauth.example/rest/"}, "server_endpoint must use https://"),
        ({"server_endpoint": "https://u:p@oauth.example/"}, "server_endpoint must not carry"),
        ({"server_endpoint": []}, "server_endpoint must be a non-empty string"),
        ({"token_owner": "both"}, "token_owner must be one of worker, producer"),
    ],
)
def test_registration_refuses_bad_server_endpoint_and_owner(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=rf"^{message}"):
        registration({**AUTH, **change})
