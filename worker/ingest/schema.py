"""JSON Schemas (Draft 2020-12) of the public task payloads and of the tasks the worker sends,
generated for the settings in force: `b24-delivery schema NAME` prints one.

Each is the validator's rules (worker/ingest/validation.py, receipt_payloads.py) in a second
expression, and tests/unit/test_schema.py runs every accept/refuse case of the validator's tests
against both. Rules worth knowing when reading them:

- JSON has one number type: an `integer` is any number with no fraction (107.0 is 107), as in
  JSON Schema; ids and `line` may also come as strings of digits (PHP's form posts).
- Strings are matched whole with `(?![\\s\\S])` (end of input in every regex dialect) instead of
  `$`, which in Python also matches before a final newline.
- `portal.register`'s endpoint URL: its shape is here; the network of an IP literal host
  (DELIVERY_ALLOWED_ENDPOINT_NETWORKS, and the networks no setting allows) is checked by the
  worker at registration and, for names, on every connection: no schema can resolve a name.

Imports nothing beyond the standard library and the validators (the producer helper may use it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.ingest import validation as v
from worker.ingest.receipt_payloads import MAX_DATE

DRAFT = "https://json-schema.org/draft/2020-12/schema"
NAMES = (
    "delivery.confirm",
    "delivery.confirm_many",
    "portal.register",
    "delivery.sent",
    "delivery.delivered",
    "tokens.renewed",
    "tokens.request",
)
END = r"(?![\s\S])"
Schema = dict[str, Any]


def _same_length(lo: str, hi: str) -> str:
    """A regex for the decimal numbers lo..hi, both of the same number of digits."""
    if not lo:
        return ""
    rest = len(lo) - 1
    if lo[0] == hi[0]:
        return lo[0] + _same_length(lo[1:], hi[1:])
    if lo[1:] == "0" * rest and hi[1:] == "9" * rest:
        return f"[{lo[0]}-{hi[0]}]" + (f"[0-9]{{{rest}}}" if rest else "")
    parts = [lo[0] + _same_length(lo[1:], "9" * rest)]
    if int(hi[0]) - int(lo[0]) > 1:
        middle = f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}]"
        parts.append(middle + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(hi[0] + _same_length("0" * rest, hi[1:]))
    return "(?:" + "|".join(parts) + ")"


def number_range(lo: int, hi: int) -> str:
    """A regex for the decimal numbers lo..hi (lo >= 1), without leading zeros."""
    parts = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        low, high = max(lo, 10 ** (n - 1)), min(hi, 10**n - 1)
        if low <= high:
            parts.append(_same_length(str(low), str(high)))
    return "(?:" + "|".join(parts) + ")"


def digits(lo: int, hi: int, max_length: int = 19) -> Schema:
    """A string of ASCII digits (leading zeros allowed) whose value is in lo..hi."""
    return {
        "type": "string",
        "maxLength": max_length,
        "pattern": f"^0*{number_range(lo, hi)}{END}",
    }


def override(field: str) -> Schema:
    """A `portal.register` override: within its setting's range (validation.override_range)."""
    low, high = v.override_range(field)
    if field in v.INTEGER_OVERRIDES:
        return {
            "anyOf": [
                {"type": "integer", "minimum": int(low), "maximum": int(high)},
                digits(int(low), int(high)),
            ]
        }
    return {"type": "number", "minimum": low, "maximum": high}


def positive_int() -> Schema:
    return {
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": v.MAX_ID},
            digits(1, v.MAX_ID),
        ]
    }


def code() -> Schema:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "not": {"pattern": r"[^A-Za-z0-9_.\-]"},
        "description": "1 to 64 letters, digits, '_', '-' or '.'",
    }


def text_string(limit: int = v.MAX_TEXT) -> Schema:
    """A string with a non-blank character, at most `limit` characters."""
    return {"type": "string", "maxLength": limit, "pattern": r"\S"}


def text(limit: int = v.MAX_TEXT) -> Schema:
    """`text_string`, or an integer id (taken as its decimal text)."""
    integer = {"type": "integer", "minimum": -v.MAX_ID, "maximum": v.MAX_ID}
    return {"anyOf": [text_string(limit), integer]}


def external_ids() -> Schema:
    """One external id, or an array of 1 to MAX_MESSAGE_IDS of them."""
    many = {"type": "array", "minItems": 1, "maxItems": v.MAX_MESSAGE_IDS, "items": text_string()}
    return {"anyOf": [text_string(), many]}


def unix_seconds(maximum: int = MAX_DATE) -> Schema:
    return {"type": "integer", "minimum": 0, "maximum": maximum, "description": "Unix seconds"}


def obj(properties: dict[str, Schema], required: list[str], **extra: Any) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        **extra,
    }


def nullable(schema: Schema) -> Schema:
    """Also `null`, which the validator reads as absent."""
    return {"anyOf": [{"type": "null"}, schema]}


def im() -> Schema:
    return obj({"chat_id": positive_int(), "message_id": positive_int()}, ["chat_id", "message_id"])


def chat() -> Schema:
    return obj({"id": text()}, ["id"])


def confirm(require_message_id: bool = False) -> Schema:
    message_required = ["id"] if require_message_id else []
    message = obj({"id": external_ids(), "date": unix_seconds(2**40)}, message_required)
    required = ["portal", "connector", "line", "im"]
    if require_message_id:
        required.append("message")
    return obj(
        {
            "portal": code(),
            "connector": code(),
            "line": positive_int(),
            "im": im(),
            "message": message if require_message_id else nullable(message),
            "chat": nullable(chat()),
        },
        required,
    )


def confirm_many(limit: int, require_message_id: bool = False) -> Schema:
    """A message whose every element is valid (the worker judges each on its own: a bad one is
    rejected under its index, the others go on)."""
    items = {"type": "array", "maxItems": limit, "items": confirm(require_message_id)}
    return obj({"confirmations": items}, ["confirmations"])


def endpoint(networks: frozenset[str]) -> Schema:
    return {
        "type": "string",
        "maxLength": v.MAX_URL,
        "pattern": f"^{v.endpoint_pattern(networks)}{END}",
        "description": v.endpoint_rule(networks).removeprefix("must be ")
        + "; an IP literal host must be in an allowed network",
    }


def register(networks: frozenset[str]) -> Schema:
    anything: Schema = {}
    properties: dict[str, Schema] = {
        "member_id": code(),
        "domain": text(),
        "client_endpoint": endpoint(networks),
        "access_token": text(4096),
        "refresh_token": text(4096),
        "expires_in": {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": v.MAX_ID},
                digits(1, v.MAX_ID),
            ]
        },
        "rate_per_s": nullable(override("rate_per_s")),
        "rate_burst": nullable(override("rate_burst")),
        "server_endpoint": nullable(endpoint(v.ALL_NETWORKS)),
        "token_owner": {"enum": list(v.TOKEN_OWNERS)},
        "packing": {"enum": [*v.PACKING_MODES, None]},
    }
    for passthrough in sorted(v.REGISTER_FIELDS - set(properties)):
        properties[passthrough] = anything  # the rest of Bitrix24's auth block: kept as given
    required = ["member_id", "domain", "client_endpoint", "access_token", "refresh_token"]
    return obj(properties, required)


def sent() -> Schema:
    schema = confirm()
    schema["properties"]["message"] = obj({"id": external_ids()}, ["id"])
    schema["required"] = [*schema["required"], "message"]
    return schema


def delivered() -> Schema:
    return obj(
        {
            "portal": code(),
            "connector": code(),
            "message_id": external_ids(),
            "date": unix_seconds(),
            "chat": nullable(chat()),
        },
        ["portal", "connector", "message_id", "date"],
    )


def tokens_renewed() -> Schema:
    """What the worker sends as DELIVERY_TOKENS_RENEWED_TASK after each refresh it makes."""
    string = {"type": "string", "minLength": 1}
    return obj(
        {
            "member_id": code(),
            "domain": string,
            "client_endpoint": string,
            "server_endpoint": string,
            "access_token": string,
            "refresh_token": string,
            "expires_in": {"type": "integer"},
        },
        [
            "member_id",
            "domain",
            "client_endpoint",
            "server_endpoint",
            "access_token",
            "refresh_token",
            "expires_in",
        ],
    )


def tokens_request() -> Schema:
    """What the worker sends as DELIVERY_TOKEN_REQUEST_TASK for a producer-owned portal."""
    return obj(
        {"member_id": code(), "token_version": {"type": "integer", "minimum": 0}},
        ["member_id", "token_version"],
    )


def schema(name: str, settings: Any = None) -> Schema:
    """The schema of `name` for `settings` (worker.settings.Settings; None: the defaults)."""
    if settings is None:
        from worker.settings import Settings

        settings = Settings()
    limit = settings.confirm_many_max
    require = bool(getattr(settings, "require_message_id", False))
    networks = settings.endpoint_networks
    build = {
        "delivery.confirm": lambda: confirm(require),
        "delivery.confirm_many": lambda: confirm_many(limit, require),
        "portal.register": lambda: register(networks),
        "delivery.sent": sent,
        "delivery.delivered": delivered,
        "tokens.renewed": tokens_renewed,
        "tokens.request": tokens_request,
    }
    if name not in build:
        raise KeyError(f"unknown payload {name!r}; one of {', '.join(NAMES)}")
    body = build[name]()
    return {"$schema": DRAFT, "title": name, **body}


def dumps(document: Schema) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


#: where the defaults' schemas are kept: in the package (the wheel) and in the docs
FOLDERS = (Path(__file__).resolve().parents[1] / "schemas", Path("docs") / "schemas")


def write_defaults(root: Path) -> list[Path]:
    """Write every schema for the default settings under `root`'s FOLDERS (`make schemas`)."""
    written = []
    for folder in FOLDERS:
        target = folder if folder.is_absolute() else root / folder
        target.mkdir(parents=True, exist_ok=True)
        for name in NAMES:
            path = target / f"{name}.json"
            path.write_text(dumps(schema(name)))
            written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_defaults(Path.cwd()):
        print(written_path)
