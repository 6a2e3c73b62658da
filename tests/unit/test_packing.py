"""The `batch` command encoding, a pure function: nested arrays spelled PHP-style
(`MESSAGES[0][im][chat_id]=323`) and percent-encoded as PHP's http_build_query does (the official
SDKs build commands that way; the platform decodes them with PHP's own query parser)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus

from b24sim.validate import parse_php_pairs
from worker.flush.batch import NOT_PACKABLE, command, php_query


def test_php_manual_examples() -> None:
    """The http_build_query examples of the PHP manual: nulls left out, spaces as '+',
    nested keys with brackets percent-encoded."""
    flat = {"foo": "bar", "baz": "boom", "cow": "milk", "null": None, "php": "hypertext processor"}
    assert php_query(flat) == "foo=bar&baz=boom&cow=milk&php=hypertext+processor"
    nested = {"user": {"name": "Bob Smith", "age": 47, "sex": "M"}}
    assert php_query(nested) == "user%5Bname%5D=Bob+Smith&user%5Bage%5D=47&user%5Bsex%5D=M"


def test_lists_get_indexes_and_booleans_digits() -> None:
    assert php_query({"a": [10, 20], "t": True, "f": False}) == "a%5B0%5D=10&a%5B1%5D=20&t=1&f=0"


def test_the_methods_documented_shape() -> None:
    """The method's MESSAGES array, as the docs' example spells it in a query string."""
    messages = [
        {
            "im": {"chat_id": 323, "message_id": 85911},
            "message": {"id": ["ext-msg-1007"], "date": 1738065600},
            "chat": {"id": "channel 123&x=1"},
        }
    ]
    text = command("myconnector", 107, messages)
    method, _, query = text.partition("?")
    assert method == "imconnector.send.status.delivery"
    assert unquote_plus(query).split("&")[:4] == [
        "CONNECTOR=myconnector",
        "LINE=107",
        "MESSAGES[0][im][chat_id]=323",
        "MESSAGES[0][im][message_id]=85911",
    ]
    assert "MESSAGES%5B0%5D%5Bchat%5D%5Bid%5D=channel+123%26x%3D1" in query
    # what a PHP-style decoder (the simulator's) makes of it: the structure we started from
    decoded = parse_php_pairs(parse_qsl(query, keep_blank_values=True))
    assert decoded["CONNECTOR"] == "myconnector" and str(decoded["LINE"]) == "107"
    msgs = decoded["MESSAGES"]
    first = msgs[0] if isinstance(msgs, list) else msgs["0"]
    assert str(first["im"]["chat_id"]) == "323"
    assert first["chat"]["id"] == "channel 123&x=1"
    ids = first["message"]["id"]
    assert (ids if isinstance(ids, list) else list(ids.values())) == ["ext-msg-1007"]


def test_refusals_that_turn_packing_off() -> None:
    assert {"ERROR_BATCH_METHOD_NOT_ALLOWED", "WRONG_AUTH_TYPE"} <= NOT_PACKABLE
