"""Validate `delivery.sent` and `delivery.delivered` payloads (the same rules, and the same
`InvalidInput` errors, as `delivery.confirm`: worker/ingest/validation.py).

Imports nothing beyond the standard library and the validator, so the producer helper
(b24producer) checks a payload with these rules before it sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.errors import InvalidInput
from worker.ingest.validation import (
    MAX_MESSAGE_IDS,
    MAX_TEXT,
    _code,
    _object,
    _text,
    _unknown,
    confirmation,
)

SENT_FIELDS = frozenset({"portal", "connector", "line", "im", "message", "chat"})
DELIVERED_FIELDS = frozenset({"portal", "connector", "message_id", "date", "chat"})
MAX_DATE = 2**40
IDS_RULE = f"must be a non-empty array of at most {MAX_MESSAGE_IDS} non-empty strings"


def connector_key(connector: str) -> str:
    """A connector id as the portal reads it: lowercased, cut at the first `.`."""
    return connector.lower().split(".", 1)[0]


@dataclass(frozen=True)
class Sent:
    """A valid `delivery.sent`: the confirmation it will become (without its date)."""

    portal: str
    connector: str
    line: int
    chat: str | None
    external_ids: list[str]
    element: dict[str, Any]  # {im, message: {id}, chat?}: what the receipt ingests, plus a date


@dataclass(frozen=True)
class Receipt:
    """A valid `delivery.delivered`."""

    portal: str
    connector: str
    chat: str | None
    external_ids: list[str]
    date: int


def sent(payload: dict[str, Any]) -> Sent:
    """A valid `delivery.sent` payload, normalised; raises InvalidInput otherwise.

    Shaped as `delivery.confirm`, with `message.id` required and no `message.date` (the date is
    the receipt's)."""
    _unknown(payload, SENT_FIELDS, "")
    message = payload.get("message")
    if message is None:
        raise InvalidInput("message", "is required (with message.id, the external ids)")
    if isinstance(message, dict) and "date" in message:
        raise InvalidInput("message.date", "is not a known field here (the receipt's date is used)")
    if isinstance(message, dict) and "id" not in message:
        raise InvalidInput("message.id", "is required (the message's external ids)")
    item = confirmation(payload)
    element = item.element
    chat = element.get("chat", {}).get("id")
    return Sent(
        portal=item.group.portal,
        connector=item.group.connector,
        line=item.group.line,
        chat=chat,
        external_ids=list(dict.fromkeys(element["message"]["id"])),
        element=element,
    )


def _ids(value: Any) -> list[str]:
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_MESSAGE_IDS:
        raise InvalidInput("message_id", IDS_RULE)
    if not all(isinstance(i, str) and i.strip() and len(i) <= MAX_TEXT for i in ids):
        raise InvalidInput("message_id", IDS_RULE)
    return list(dict.fromkeys(ids))


def receipt(payload: dict[str, Any]) -> Receipt:
    """A valid `delivery.delivered` payload, normalised; raises InvalidInput otherwise."""
    _unknown(payload, DELIVERED_FIELDS, "")
    for required in ("portal", "connector", "message_id", "date"):
        if required not in payload:
            raise InvalidInput(required, "is required")
    date = payload["date"]
    if isinstance(date, bool) or not isinstance(date, int) or not 0 <= date <= MAX_DATE:
        raise InvalidInput("date", "must be Unix seconds (a non-negative integer)")
    chat = None
    if payload.get("chat") is not None:
        given = _object(payload["chat"], "chat")
        _unknown(given, frozenset({"id"}), "chat")
        if "id" not in given:
            raise InvalidInput("chat.id", "is required when chat is given")
        chat = _text(given["id"], "chat.id")
    return Receipt(
        portal=_code(payload["portal"], "portal"),
        connector=_code(payload["connector"], "connector"),
        chat=chat,
        external_ids=_ids(payload["message_id"]),
        date=date,
    )
