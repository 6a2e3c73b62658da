"""Hostile `delivery.sent` / `delivery.delivered` payloads: every field of a valid payload
replaced by any JSON value gives a normalised payload or an InvalidInput naming a field, never
another exception (the receipts' task boundary)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reliability.test_bad_input import json_value
from worker.errors import InvalidInput
from worker.ingest import receipt_payloads

SENT: dict[str, Any] = {
    "portal": "p1",
    "connector": "myconnector",
    "line": 107,
    "im": {"chat_id": 323, "message_id": 85911},
    "message": {"id": ["ext-1007"]},
    "chat": {"id": "channel-123"},
}
DELIVERED: dict[str, Any] = {
    "portal": "p1",
    "connector": "myconnector",
    "message_id": ["ext-1007"],
    "date": 1738065600,
    "chat": {"id": "channel-123"},
}
SENT_PATHS = [
    ("portal",), ("connector",), ("line",), ("im",), ("im", "chat_id"), ("im", "message_id"),
    ("message",), ("message", "id"), ("chat",), ("chat", "id"),
]  # fmt: skip
DELIVERED_PATHS = [
    ("portal",), ("connector",), ("message_id",), ("date",), ("chat",), ("chat", "id"),
]  # fmt: skip


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body


def _judged(check: Any, body: dict[str, Any]) -> None:
    error: InvalidInput | None = None
    try:
        check(body)
    except InvalidInput as exc:
        error = exc
    assert error is None or (error.field and error.rule)


def test_the_valid_payloads_pass() -> None:
    assert receipt_payloads.sent(SENT).external_ids == ["ext-1007"]
    assert receipt_payloads.receipt(DELIVERED).external_ids == ["ext-1007"]


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(SENT_PATHS), value=json_value)
def test_any_value_in_any_sent_field(path: tuple[str, ...], value: Any) -> None:
    _judged(receipt_payloads.sent, _with(SENT, path, value))


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(DELIVERED_PATHS), value=json_value)
def test_any_value_in_any_delivered_field(path: tuple[str, ...], value: Any) -> None:
    _judged(receipt_payloads.receipt, _with(DELIVERED, path, value))
