"""Validate task payloads. Every rejection names the field and the rule (`InvalidInput`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

from worker.errors import InvalidInput
from worker.net.trust import ALL_NETWORKS as ALL_NETWORKS  # the schemas read it here
from worker.net.trust import url_problem
from worker.settings import ENV_NAMES, RULES, Range
from worker.store.keys import Group

T = TypeVar("T", int, float)
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CODE_RULE = "must be 1 to 64 characters of letters, digits, '_', '-' or '.'"
MAX_ID = 2**63 - 1
MAX_TEXT = 256
MAX_MESSAGE_IDS = 100
CONFIRM_FIELDS = frozenset({"portal", "connector", "line", "im", "message", "chat"})
#: the rule DELIVERY_REQUIRE_MESSAGE_ID=1 adds (imopenlines onReceivedStatusDelivery stores
#: message.id as the message's external id, CONNECTOR_MID; docs/bitrix24.md)
MESSAGE_ID_RULE = (
    "is required (DELIVERY_REQUIRE_MESSAGE_ID=1): the portal keeps it as the message's "
    "external id, which its later update and delete events carry"
)
REGISTER_FIELDS = frozenset(
    {
        "member_id",
        "domain",
        "client_endpoint",
        "access_token",
        "refresh_token",
        "expires_in",
        "expires",
        "server_endpoint",
        "scope",
        "status",
        "user_id",
        "application_token",
        "rate_per_s",
        "rate_burst",
        "token_owner",
        "packing",
    }
)
TOKEN_OWNERS = ("worker", "producer")
PACKING_MODES = ("off", "batch")


@dataclass(frozen=True)
class Confirmation:
    group: Group
    message_id: str  # im.message_id: the coalescing key
    element: dict[str, Any]  # one MESSAGES element: {im, message?, chat?}

    @property
    def has_message_id(self) -> bool:
        return "id" in self.element.get("message", {})


@dataclass(frozen=True)
class Registration:
    member_id: str
    domain: str
    client_endpoint: str
    access_token: str
    refresh_token: str
    expires_in: int
    rate_per_s: float | None = None
    rate_burst: int | None = None
    #: the OAuth server that issued the tokens (its host is checked against the allowlist)
    server_endpoint: str | None = None
    #: who refreshes: "worker" (announces each new pair) or "producer" (asked for new tokens)
    token_owner: str = "worker"  # noqa: S105 (a mode, not a secret)
    #: "batch" or "off" for this portal; None: follow DELIVERY_PACKING
    packing: str | None = None


def _code(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise InvalidInput(field, _CODE_RULE)
    return value


def _whole(value: Any) -> Any:
    """A float with no fraction as the integer it is: JSON has one number type, and JSON Schema's
    `integer` is any number with a zero fractional part (107.0 is 107)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _positive_int(value: Any, field: str) -> int:
    value = _whole(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise InvalidInput(field, "must be a positive integer")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be an object")
    return value


def _text(value: Any, field: str, limit: int = MAX_TEXT) -> str:
    """A non-blank string of at most `limit` characters; an integer id (within +-MAX_ID) is
    taken as its decimal text."""
    value = _whole(value)
    if isinstance(value, int) and not isinstance(value, bool) and -MAX_ID <= value <= MAX_ID:
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInput(field, f"must be a non-empty string of at most {limit} characters")
    return value


def _key_name(key: Any) -> str:
    """A key as a field name: plain when it looks like one, quoted (and cut) otherwise."""
    text = str(key)
    return text if _CODE.fullmatch(text) else repr(text[:40])


def _unknown(payload: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = sorted(_key_name(k) for k in payload if k not in allowed)
    if extra:
        raise InvalidInput(
            extra[0] if not where else f"{where}.{extra[0]}",
            f"is not a known field (expected {', '.join(sorted(allowed))})",
        )


def _message(value: Any) -> dict[str, Any]:
    message = _object(value, "message")
    _unknown(message, frozenset({"id", "date"}), "message")
    out: dict[str, Any] = {}
    if "id" in message:
        ids = message["id"]
        if isinstance(ids, str):
            ids = [ids]  # the docs' most common mistake: one id given as a plain string
        rule = f"must be a non-empty array of at most {MAX_MESSAGE_IDS} non-empty strings"
        if not isinstance(ids, list) or not 0 < len(ids) <= MAX_MESSAGE_IDS:
            raise InvalidInput("message.id", rule)
        if not all(isinstance(i, str) and i.strip() and len(i) <= MAX_TEXT for i in ids):
            raise InvalidInput("message.id", rule)
        out["id"] = ids
    if "date" in message:
        date = _whole(message["date"])
        if isinstance(date, bool) or not isinstance(date, int) or not 0 <= date <= 2**40:
            raise InvalidInput("message.date", "must be Unix seconds (a non-negative integer)")
        out["date"] = date
    return out


def confirmation(payload: dict[str, Any], *, require_message_id: bool = False) -> Confirmation:
    """A valid `delivery.confirm` payload, normalised; raises InvalidInput otherwise.

    `message` is optional, as the method's spec has it; with `require_message_id`
    (DELIVERY_REQUIRE_MESSAGE_ID) a confirmation without `message.id` is refused."""
    _unknown(payload, CONFIRM_FIELDS, "")
    for required in ("portal", "connector", "line", "im"):
        if required not in payload:
            raise InvalidInput(required, "is required")
    portal = _code(payload["portal"], "portal")
    connector = _code(payload["connector"], "connector")
    line = _positive_int(payload["line"], "line")
    im = _object(payload["im"], "im")
    _unknown(im, frozenset({"chat_id", "message_id"}), "im")
    for key in ("chat_id", "message_id"):
        if key not in im:
            raise InvalidInput(f"im.{key}", "is required")
    element: dict[str, Any] = {
        "im": {
            "chat_id": _positive_int(im["chat_id"], "im.chat_id"),
            "message_id": _positive_int(im["message_id"], "im.message_id"),
        }
    }
    if payload.get("message") is not None:
        element["message"] = _message(payload["message"])
    if require_message_id and "id" not in element.get("message", {}):
        raise InvalidInput("message.id", MESSAGE_ID_RULE)
    if payload.get("chat") is not None:
        chat = _object(payload["chat"], "chat")
        _unknown(chat, frozenset({"id"}), "chat")
        if "id" not in chat:
            raise InvalidInput("chat.id", "is required when chat is given")
        element["chat"] = {"id": _text(chat["id"], "chat.id")}
    return Confirmation(Group(portal, connector, line), str(element["im"]["message_id"]), element)


MAX_URL = 2048
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_NAME = rf"{_LABEL}(?:\.{_LABEL})*"
_HOST = rf"(?:{_NAME}|\[[0-9A-Fa-f:]{{2,39}}\])"
_LOOPBACK_HOST = rf"(?:localhost|127(?:\.{_OCTET}){{3}}|\[::1\])"
_REST = r"(?:[/?#][!-~]*)?"


def endpoint_pattern(networks: frozenset[str]) -> str:
    """The shape of an endpoint URL (matched whole): `https://host[:port][/path]`, or
    `http://` to a loopback host when `loopback` is allowed; no credentials, no whitespace."""
    http = rf"|http://{_LOOPBACK_HOST}" if "loopback" in networks else ""
    return rf"(?:https://{_HOST}{http})(?::{_PORT})?{_REST}"


def endpoint_rule(networks: frozenset[str]) -> str:
    loopback = ", or http:// to localhost, 127.x.x.x or [::1]" if "loopback" in networks else ""
    return (
        f"must be an https:// URL{loopback} (host name or IP literal, optional port and path; "
        "no credentials, no spaces)"
    )


def _endpoint(value: Any, field: str, networks: frozenset[str] = ALL_NETWORKS) -> str:
    """`url_problem` (worker/net/trust.py: scheme, credentials, and the network of an IP literal
    host, the one rule no JSON Schema can say; a name is checked on every connection), then the
    URL's shape (`endpoint_pattern`, which the JSON Schema carries too)."""
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise InvalidInput(field, f"must be a non-empty string of at most {MAX_URL} characters")
    problem = url_problem(value, networks)
    if problem:
        raise InvalidInput(field, problem)
    if not re.fullmatch(endpoint_pattern(networks), value):
        raise InvalidInput(field, endpoint_rule(networks))
    endpoint = value
    return endpoint


#: the numeric overrides of `portal.register`, each held to the range of its setting
OVERRIDES = ("rate_per_s", "rate_burst")
#: the overrides that are counts (an integer, or a string of digits)
INTEGER_OVERRIDES = frozenset({"rate_burst"})


def override_range(field: str) -> tuple[float, float]:
    """The range of a `portal.register` override: its setting's (worker/settings.py RULES)."""
    parse = RULES[field][0]
    assert isinstance(parse, Range), field
    return parse.low, parse.high


def _override(payload: dict[str, Any], field: str, kind: type[T]) -> T | None:
    """A per-portal override of a setting, within the setting's own range (worker/settings.py
    RULES): a value the setting refuses (`rate_per_s=1e-300` would stall the limiter) is refused
    here too. A float is any JSON number; an integer is a number without a fraction (4.0 is 4,
    as JSON Schema says) or a string of digits."""
    value = payload.get(field)
    if value is None:
        return None
    parse, rule = RULES[field]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int and isinstance(value, float):
        numeric = value.is_integer()  # 1.5 bursts: not a count
        value = int(value) if numeric else value
    digits = isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19
    try:
        if not (numeric or (digits and kind is int)):
            raise ValueError(field)
        parsed = parse(str(value))
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(field, f"must be {rule} (the range of {ENV_NAMES[field]})") from None
    return kind(parsed)


def registration(payload: dict[str, Any], networks: frozenset[str] = ALL_NETWORKS) -> Registration:
    """A valid `portal.register` payload (an `auth` block); raises InvalidInput otherwise.

    `networks`: DELIVERY_ALLOWED_ENDPOINT_NETWORKS, for the endpoint's scheme and IP literal. The
    worker's task passes its own; without it (a producer checking before it sends) only what no
    network allows is refused.
    """
    _unknown(payload, REGISTER_FIELDS, "")
    for required in ("member_id", "domain", "client_endpoint", "access_token", "refresh_token"):
        if required not in payload:
            raise InvalidInput(required, "is required")
    endpoint = _endpoint(payload["client_endpoint"], "client_endpoint", networks)
    if not endpoint.endswith("/"):
        endpoint += "/"
    raw_expires = payload.get("expires_in", 3600)
    if isinstance(raw_expires, float) and 0 < raw_expires <= MAX_ID:
        raw_expires = max(1, int(raw_expires))  # whole seconds; a lifetime, not an id
    expires_in = _positive_int(raw_expires, "expires_in")
    rate = _override(payload, "rate_per_s", float)
    burst = _override(payload, "rate_burst", int)
    server_endpoint = payload.get("server_endpoint")
    if server_endpoint is not None:
        server_endpoint = _endpoint(server_endpoint, "server_endpoint")
    owner = payload.get("token_owner", "worker")
    if owner not in TOKEN_OWNERS:
        raise InvalidInput("token_owner", f"must be one of {', '.join(TOKEN_OWNERS)}")
    packing = payload.get("packing")
    if packing is not None and packing not in PACKING_MODES:
        raise InvalidInput("packing", 'must be "batch" or "off"')
    return Registration(
        member_id=_code(payload["member_id"], "member_id"),
        domain=_text(payload["domain"], "domain"),
        client_endpoint=endpoint,
        access_token=_text(payload["access_token"], "access_token", 4096),
        refresh_token=_text(payload["refresh_token"], "refresh_token", 4096),
        expires_in=expires_in,
        rate_per_s=rate,
        rate_burst=burst,
        server_endpoint=server_endpoint,
        token_owner=owner,
        packing=packing,
    )
