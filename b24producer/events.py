"""Read Bitrix24's `OnImConnectorMessageAdd` event as the portal posts it to a connector service.

The portal POSTs the event form-encoded, PHP style (`event=ONIMCONNECTORMESSAGEADD`,
`data[CONNECTOR]=…`, `data[LINE]=…`, `data[MESSAGES][0][im][chat_id]=…`,
`data[MESSAGES][0][chat][id]=…`, `auth[application_token]=…`, `auth[member_id]=…`, …). The
`auth[application_token]` proves the post comes from the portal that installed the application:
it is compared (in constant time) with the one the connector service stored at install. Then

    event = read_message_add(body, application_token=STORED_TOKEN)
    external_id = my_network.send(event.messages[0])               # send it out
    producer.sent(**event.sent_kwargs(0, external_ids=[external_id]))

`read_message_add` is pure (no I/O) and raises `EventError` (naming the field and the rule) for
anything else: a body that is not such an event, or a wrong token.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

EVENT_NAME = "ONIMCONNECTORMESSAGEADD"
#: PHP's default `max_input_vars`: a portal's post stays well under it
MAX_FIELDS = 1000
MAX_BODY = 1 << 20
_MESSAGE_FIELD = re.compile(
    r"data\[MESSAGES\]\[(\d{1,4})\]\[(im|chat)\]\[(chat_id|message_id|id)\]"
)
_AUTH_FIELD = re.compile(r"auth\[([a-z_]{1,40})\]")
#: the auth block's fields portal.register takes (the auth block as Bitrix24 sends it)
REGISTER_AUTH_FIELDS = (
    "member_id",
    "domain",
    "client_endpoint",
    "server_endpoint",
    "access_token",
    "refresh_token",
    "expires_in",
    "expires",
    "scope",
    "status",
    "user_id",
    "application_token",
)


class EventError(ValueError):
    """Raised when a post is not a valid `OnImConnectorMessageAdd` event for this service."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field} {rule}")
        self.field = field
        self.rule = rule


@dataclass(frozen=True)
class EventMessage:
    """One element of `data[MESSAGES]`: Bitrix24's ids, and the external chat when given."""

    im: dict[str, int]  # {"chat_id": …, "message_id": …}
    chat_id: str | None = None


@dataclass(frozen=True)
class MessageAddEvent:
    connector: str
    line: int
    messages: list[EventMessage]
    member_id: str
    auth: dict[str, str] = field(repr=False)  # the whole auth block (tokens: never logged)

    def register_kwargs(self) -> dict[str, Any]:
        """The auth block as `portal.register` takes it (`Producer.register_portal(**…)`)."""
        out: dict[str, Any] = {k: self.auth[k] for k in REGISTER_AUTH_FIELDS if k in self.auth}
        if "expires_in" in out and out["expires_in"].isdigit():
            out["expires_in"] = int(out["expires_in"])
        return out

    def sent_kwargs(self, index: int, external_ids: list[str]) -> dict[str, Any]:
        """`Producer.sent` keyword arguments for message `index`, sent out as `external_ids`."""
        message = self.messages[index]
        kwargs: dict[str, Any] = {
            "portal": self.member_id,
            "connector": self.connector,
            "line": self.line,
            "im": dict(message.im),
            "message": {"id": list(external_ids)},
        }
        if message.chat_id is not None:
            kwargs["chat"] = {"id": message.chat_id}
        return kwargs


def _positive(value: str | None, name: str) -> int:
    if value is None:
        raise EventError(name, "is required")
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 19 and int(value) > 0):
        raise EventError(name, "must be a positive integer")
    return int(value)


def _fields(body: bytes | str) -> dict[str, str]:
    if len(body) > MAX_BODY:
        raise EventError("body", f"must be at most {MAX_BODY} bytes")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("body", "must be UTF-8 form-encoded text") from None
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise EventError("body", f"must hold at most {MAX_FIELDS} form fields") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields and fields[key] != value:
            raise EventError(key, "is given twice with different values")
        fields[key] = value
    return fields


def read_message_add(body: bytes | str, *, application_token: str) -> MessageAddEvent:
    """The event in a form-encoded `OnImConnectorMessageAdd` post, its `auth[application_token]`
    checked against `application_token`; raises EventError otherwise."""
    if not application_token:
        raise EventError("application_token", "must be the non-empty token stored at install")
    fields = _fields(body)
    given = fields.get("auth[application_token]", "")
    if not hmac.compare_digest(given.encode(), application_token.encode()):
        raise EventError("auth[application_token]", "does not match this application's token")
    if fields.get("event", "").upper() != EVENT_NAME:
        raise EventError("event", f"must be {EVENT_NAME}")
    connector = fields.get("data[CONNECTOR]", "")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", connector):
        raise EventError(
            "data[CONNECTOR]", "must be 1 to 64 characters of letters, digits, '_', '-' or '.'"
        )
    line = _positive(fields.get("data[LINE]"), "data[LINE]")
    member_id = fields.get("auth[member_id]", "")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", member_id):
        raise EventError("auth[member_id]", "must be 1 to 64 letters, digits, '_', '-' or '.'")
    auth = {m[1]: v for k, v in fields.items() if (m := _AUTH_FIELD.fullmatch(k))}
    return MessageAddEvent(connector, line, _messages(fields), member_id, auth)


def _messages(fields: dict[str, str]) -> list[EventMessage]:
    found: dict[int, dict[str, str]] = {}
    for key, value in fields.items():
        match = _MESSAGE_FIELD.fullmatch(key)
        if match:
            index, part, name = int(match[1]), match[2], match[3]
            found.setdefault(index, {})[f"{part}.{name}"] = value
    if not found:
        raise EventError("data[MESSAGES]", "must hold at least one message with its im ids")
    messages = []
    for index in sorted(found):
        parts, where = found[index], f"data[MESSAGES][{index}]"
        im = {
            name: _positive(parts.get(f"im.{name}"), f"{where}[im][{name}]")
            for name in ("chat_id", "message_id")
        }
        chat = parts.get("chat.id")
        if chat is not None and not (chat.strip() and len(chat) <= 256):
            raise EventError(f"{where}[chat][id]", "must be a non-empty string of at most 256")
        messages.append(EventMessage(im, chat))
    return messages
