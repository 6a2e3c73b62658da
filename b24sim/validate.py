"""Request parameters: parsing (JSON, form, PHP-style keys), the portal's own normalisation and
checks (lenient, as the imconnector module does), and the stricter spec validation (strict mode).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

METHOD = "imconnector.send.status.delivery"
_KEY_PART = re.compile(r"\[([^\]]*)\]")


@cache
def load_spec(method: str = METHOD) -> dict[str, Any]:
    """The method spec shipped in ``b24sim/spec`` (copy of the docs' simulator spec)."""
    text = resources.files("b24sim").joinpath("spec", f"{method}.json").read_text(encoding="utf-8")
    spec: dict[str, Any] = json.loads(text)
    return spec


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        fixed = {k: _listify(v) for k, v in node.items()}
        if fixed and all(isinstance(k, str) and k.isdigit() for k in fixed):
            return [fixed[k] for k in sorted(fixed, key=int)]
        return fixed
    return node


def parse_php_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn ``MESSAGES[0][im][chat_id]=1`` style pairs into nested dicts/lists, like PHP does."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + (_KEY_PART.findall("[" + rest) if rest else [])
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    result: dict[str, Any] = _listify(root)
    return result


#: PHP's default ``max_input_vars``: ``parse_str`` registers no variable past it
MAX_INPUT_VARS = 1000


def parse_str(query: str, max_vars: int = MAX_INPUT_VARS) -> tuple[dict[str, Any], bool]:
    """A batch command's query as PHP's ``parse_str`` reads it (``rest_util.php``
    ``ParseBatchQuery``): at most ``max_vars`` variables, the rest dropped without an error
    (PHP only warns). Returns the parameters and whether any were dropped."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return parse_php_pairs(pairs[:max_vars]), len(pairs) > max_vars


def parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Merge query-string and body parameters (body wins). Raises ValueError on a bad JSON body."""
    params = parse_php_pairs(parse_qsl(query, keep_blank_values=True))
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return params
    # the rest module decodes a JSON body only when the request says it is one
    if content_type.split(";")[0].strip().lower() == "application/json":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        params.update(data)
    else:
        params.update(parse_php_pairs(parse_qsl(text, keep_blank_values=True)))
    return params


def _is_int_like(v: Any, positive: bool = False) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v > 0 if positive else True
    if isinstance(v, str) and v.strip().isdigit():
        return int(v) > 0 if positive else True
    return False


def _is_id(v: Any) -> bool:
    return _is_int_like(v) or (isinstance(v, str) and v.strip() != "")


def _check_type(value: Any, typ: str) -> bool:
    if typ == "string":
        return isinstance(value, str) and value != ""
    if typ == "integer":
        return _is_int_like(value, positive=True)
    if typ == "array":
        return isinstance(value, list) and len(value) > 0
    if typ == "object":
        return isinstance(value, dict)
    return value is not None


def _check_element(el: Any, fields: list[dict[str, Any]], idx: int) -> str | None:
    if not isinstance(el, dict):
        return f"MESSAGES[{idx}] must be an object"
    for f in fields:
        name, typ = f["name"], f["type"]
        if name not in el or el[name] is None:
            if f.get("required"):
                return f"MESSAGES[{idx}][{name}] is required"
            continue
        if not _check_type(el[name], typ):
            return f"MESSAGES[{idx}][{name}] must be {typ}"
    return _check_nested(el, idx)


def _check_nested(el: dict[str, Any], idx: int) -> str | None:
    im = el["im"]
    for key in ("chat_id", "message_id"):
        if not _is_id(im.get(key)):
            return f"MESSAGES[{idx}][im][{key}] is required"
    msg = el.get("message")
    if isinstance(msg, dict):
        ids = msg.get("id")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(x, str) for x in ids)):
            return f"MESSAGES[{idx}][message][id] must be an array of strings"
        if msg.get("date") is not None and not _is_int_like(msg["date"]):
            return f"MESSAGES[{idx}][message][date] must be integer"
    chat = el.get("chat")
    if isinstance(chat, dict) and not _is_id(chat.get("id")):
        return f"MESSAGES[{idx}][chat][id] is required"
    return None


def validate(params: dict[str, Any], method: str = METHOD) -> str | None:
    """None if ``params`` satisfy the spec; otherwise an error description (for ERROR_ARGUMENT)."""
    spec = load_spec(method)
    for p in spec["params"]:
        name = p["name"]
        value = params.get(name)
        if value is None or value == "" or value == [] or value == {}:
            if p.get("required"):
                return f"Argument {name} is null or empty"
            continue
        if not _check_type(value, p["type"]):
            return f"Argument {name} must be {p['type']}"
        ref = p.get("ref")
        if ref and isinstance(value, list):
            fields = spec["defs"][ref.rsplit("/", 1)[-1]]["fields"]
            for i, el in enumerate(value):
                err = _check_element(el, fields, i)
                if err:
                    return err
    return None


REQUIRED = ("CONNECTOR", "LINE", "MESSAGES")


def real_connector_id(connector: Any) -> str:
    """The connector id as the portal looks it up: lowercased, cut at its first ``.``."""
    return str(connector).lower().split(".", 1)[0]


def php_int(value: Any) -> int:
    """PHP's ``(int)`` of a scalar: leading digits of a string, else 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    m = re.match(r"\s*([+-]?\d+)", str(value))
    return int(m.group(1)) if m else 0


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    """What the module reads: top-level names matched case-insensitively (the first spelling wins),
    ``MESSAGES`` element keys lowercased. Names not of the method keep their spelling."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        upper = key.upper() if isinstance(key, str) else key
        name = upper if upper in REQUIRED else key
        if name not in out:
            out[name] = value
    msgs = out.get("MESSAGES")
    if isinstance(msgs, dict):  # a JSON object is a PHP array too: its values are the elements
        msgs = list(msgs.values())
    if isinstance(msgs, list):
        out["MESSAGES"] = [
            {str(k).lower(): v for k, v in el.items()} if isinstance(el, dict) else el
            for el in msgs
        ]
    return out


def check_present(params: dict[str, Any]) -> str | None:
    """The module's only argument check: a missing or null parameter, MESSAGES not an array."""
    for name in REQUIRED:
        if params.get(name) is None:
            return f"Argument '{name}' is null or empty"
    if not isinstance(params["MESSAGES"], list):
        return "The value of an argument 'MESSAGES' must be of type array"
    return None
