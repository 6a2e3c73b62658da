"""`b24producer.events.read_message_add` against form-encoded posts shaped as Bitrix24 sends
`OnImConnectorMessageAdd` (the REST docs' event page: `data[CONNECTOR]`, `data[LINE]`,
`data[MESSAGES][N]` with `im{chat_id, message_id}` and `chat{id}`, plus the `auth` block of
`_includes/auth-params-in-events.md`), and any body at all (hypothesis): an event or an
`EventError`, never another exception."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b24producer.events import EventError, MessageAddEvent, read_message_add
from worker.ingest.receipt_payloads import sent
from worker.ingest.validation import registration

TOKEN = "app-token-51ef"


def post(**override: str | None) -> str:
    """An event post as the portal makes it (PHP-style nested form fields)."""
    fields: dict[str, str | None] = {
        "event": "ONIMCONNECTORMESSAGEADD",
        "event_handler_id": "17",
        "data[CONNECTOR]": "myconnector",
        "data[LINE]": "107",
        "data[MESSAGES][0][im][chat_id]": "845",
        "data[MESSAGES][0][im][message_id]": "344029",
        "data[MESSAGES][0][message][text]": 'Sergey "Pokoev":\n Test message',
        "data[MESSAGES][0][chat][id]": "2",
        "ts": "1738065600",
        "auth[access_token]": "at-1",
        "auth[expires]": "1738069200",
        "auth[expires_in]": "3600",
        "auth[scope]": "imopenlines,imconnector",
        "auth[domain]": "example.bitrix24.com",
        "auth[server_endpoint]": "https://oauth.bitrix.info/rest/",
        "auth[status]": "L",
        "auth[client_endpoint]": "https://example.bitrix24.com/rest/",
        "auth[member_id]": "a1b2c3d4e5f6",
        "auth[user_id]": "1",
        "auth[refresh_token]": "rt-1",
        "auth[application_token]": TOKEN,
    }
    fields.update(override)
    return urlencode({k: v for k, v in fields.items() if v is not None})


def test_the_documented_shape_reads_into_connector_line_and_im_ids() -> None:
    event = read_message_add(post().encode(), application_token=TOKEN)
    assert (event.connector, event.line, event.member_id) == ("myconnector", 107, "a1b2c3d4e5f6")
    assert [m.im for m in event.messages] == [{"chat_id": 845, "message_id": 344029}]
    assert event.messages[0].chat_id == "2"
    kwargs = event.sent_kwargs(0, external_ids=["tg-77"])
    assert sent(kwargs).element == {
        "im": {"chat_id": 845, "message_id": 344029},
        "message": {"id": ["tg-77"]},
        "chat": {"id": "2"},
    }, "the parsed event makes a valid delivery.sent"
    auth = registration(event.register_kwargs())
    assert auth.member_id == "a1b2c3d4e5f6" and auth.expires_in == 3600


def test_several_messages_come_in_their_index_order() -> None:
    body = post(
        **{
            "data[MESSAGES][1][im][chat_id]": "845",
            "data[MESSAGES][1][im][message_id]": "344030",
        }
    )
    event = read_message_add(body, application_token=TOKEN)
    assert [m.im["message_id"] for m in event.messages] == [344029, 344030]
    assert event.messages[1].chat_id is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"auth[application_token]": "forged"}, "auth[application_token]"),
        ({"auth[application_token]": None}, "auth[application_token]"),
        ({"event": "ONIMCONNECTORMESSAGEUPDATE"}, "event"),
        ({"data[CONNECTOR]": "a b"}, "data[CONNECTOR]"),
        ({"data[LINE]": "x"}, "data[LINE]"),
        ({"data[LINE]": None}, "data[LINE]"),
        ({"data[MESSAGES][0][im][message_id]": "-1"}, "data[MESSAGES][0][im][message_id]"),
        ({"data[MESSAGES][0][im][chat_id]": None}, "data[MESSAGES][0][im][chat_id]"),
        ({"auth[member_id]": ""}, "auth[member_id]"),
        ({"data[MESSAGES][0][chat][id]": " "}, "data[MESSAGES][0][chat][id]"),
    ],
)
def test_a_wrong_post_names_the_field(override: dict[str, str | None], field: str) -> None:
    with pytest.raises(EventError) as err:
        read_message_add(post(**override), application_token=TOKEN)
    assert err.value.field == field


def test_no_messages_or_an_empty_expected_token_are_refused() -> None:
    bare = {f"data[MESSAGES][0][{k}]": None for k in ("im][chat_id", "im][message_id")}
    with pytest.raises(EventError, match=r"data\[MESSAGES\]"):
        read_message_add(post(**bare), application_token=TOKEN)
    with pytest.raises(EventError, match="application_token"):
        read_message_add(post(**{"auth[application_token]": ""}), application_token="")


def test_a_field_given_twice_with_different_values_is_refused() -> None:
    with pytest.raises(EventError, match="given twice"):
        read_message_add(post() + "&data%5BLINE%5D=108", application_token=TOKEN)


def test_too_many_fields_are_refused() -> None:
    with pytest.raises(EventError, match="form fields"):
        read_message_add(post() + "&x=1" * 1000, application_token=TOKEN)


_keys = st.sampled_from(
    [
        "event",
        "data[CONNECTOR]",
        "data[LINE]",
        "data[MESSAGES][0][im][chat_id]",
        "data[MESSAGES][0][im][message_id]",
        "data[MESSAGES][3][chat][id]",
        "auth[member_id]",
        "auth[application_token]",
    ]
) | st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        st.dictionaries(_keys, st.text(max_size=30), max_size=10).map(urlencode),
        st.dictionaries(_keys, st.text(max_size=30), max_size=10).map(
            lambda d: post(**{k: v for k, v in d.items()})
        ),
    )
)
def test_any_body_gives_an_event_or_an_event_error(body: bytes | str) -> None:
    outcome = read_or_error(body)
    if isinstance(outcome, EventError):
        assert outcome.field and outcome.rule
    else:
        assert isinstance(outcome, MessageAddEvent) and outcome.messages


def read_or_error(body: bytes | str) -> MessageAddEvent | EventError:
    try:
        return read_message_add(body, application_token=TOKEN)
    except EventError as exc:
        return exc
