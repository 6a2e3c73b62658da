"""Reading an answer from a host we do not control: bounded in size, time and shape.

Any Bitrix24 installation can install the app, so what a portal (or an OAuth server a portal
named) answers may be hostile. Every call made through `fetch` therefore:

- reads the body as a stream, at most `max_bytes` on the wire and at most `max_bytes` once
  decoded: `gzip` and `deflate` are unpacked here, chunk by chunk, with zlib's `max_length`, so a
  gzip bomb costs at most `max_bytes` of memory before it is refused (ANSWER_TOO_LARGE); any
  other `Content-Encoding`, or more than one, is refused unread (ANSWER_ENCODING);
- ends by a total deadline, connect to last byte (`worker/net/deadline.py` shuts the socket
  down when it passes), whatever the pace of the bytes (ANSWER_TOO_SLOW);
- parses JSON with a nesting limit checked before the parser runs (100,000 `[` never reach the
  recursive parser), integers too long for any sane field kept as NaN, `NaN`/`Infinity` allowed
  (the caller checks numbers before use), and a body that is JSON but not an object refused
  (ANSWER_MALFORMED). A body that is not JSON at all is malformed when the status is 200; with
  another status it is left to the caller (a proxy's HTML error page is a transient failure).

Each refusal is a `PortalError` of outcome BAD_ANSWER with its own code: a counted failure of the
portal, never an exception of another class. The pure core (`decode`, `parse`) is tested alone.
"""

from __future__ import annotations

import contextlib
import itertools
import json as _json
import math
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from urllib3.response import BaseHTTPResponse

from worker.errors import PortalError
from worker.flush.policy import Outcome
from worker.net import deadline, guard
from worker.net.trust import EndpointRefused

#: the default cap of an answer, decoded (DELIVERY_HTTP_MAX_ANSWER_BYTES)
DEFAULT_MAX_BYTES = 256 * 1024
#: deeper JSON is refused unparsed; Bitrix24's answers nest 4 or 5 levels (a `batch` answer)
MAX_DEPTH = 32
#: a longer integer is no value any field of an answer holds: kept as NaN, never parsed
MAX_INT_DIGITS = 32
#: bytes read from the socket at a time
CHUNK = 16 * 1024
#: the encodings we ask for (and the only ones unpacked)
ACCEPT_ENCODING = "gzip, deflate"

TOO_LARGE, TOO_SLOW = "ANSWER_TOO_LARGE", "ANSWER_TOO_SLOW"
MALFORMED, ENCODING = "ANSWER_MALFORMED", "ANSWER_ENCODING"


@dataclass(frozen=True)
class Timeouts:
    """The limits of one call: connect, one read, the whole call (None: connect + read), and
    the most its answer may hold, decoded."""

    connect_s: float
    read_s: float
    total_s: float | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def deadline_s(self) -> float:
        return self.total_s if self.total_s is not None else self.connect_s + self.read_s


@dataclass(frozen=True)
class Answer:
    """A read answer: its status, its Location (redirects), and its body as a JSON object
    (None: empty or not JSON, with a status other than 200)."""

    status: int
    location: str
    body: dict[str, Any] | None


class Refused(Exception):
    """Raised by the pure core when an answer breaks a rule; `code` names which."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


def bad_answer(code: str, description: str, status: int | None = None) -> PortalError:
    return PortalError(Outcome.BAD_ANSWER, code, description[:300], status)


# -- the pure core -------------------------------------------------------------------------


def _decoder(content_encoding: str) -> Any:
    """A zlib decompressor for the header's encoding, None for identity; refuses the rest."""
    names = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
    names = [n for n in names if n != "identity"]
    if not names:
        return None
    if len(names) > 1 or names[0] not in ("gzip", "x-gzip", "deflate"):
        raise Refused(ENCODING, f"Content-Encoding {content_encoding[:60]!r} is not accepted")
    # 32 + MAX_WBITS: a zlib or a gzip header, detected
    return zlib.decompressobj(32 + zlib.MAX_WBITS)


def declared_length(headers: Mapping[str, str], max_bytes: int) -> None:
    """Refuse an answer whose Content-Length announces more than the cap (a lie the other way
    is caught while reading)."""
    raw = headers.get("Content-Length", "").strip()
    if raw.isdigit() and len(raw) < 20 and int(raw) > max_bytes:
        raise Refused(TOO_LARGE, f"Content-Length {raw} over {max_bytes} bytes")


def decode(chunks: Iterable[bytes], content_encoding: str, max_bytes: int) -> bytes:
    """The body from its raw chunks: at most `max_bytes` read and at most `max_bytes` decoded.
    Raises Refused."""
    unpack = _decoder(content_encoding)
    wire = 0
    out = bytearray()
    for chunk in chunks:
        wire += len(chunk)
        if wire > max_bytes:
            raise Refused(TOO_LARGE, f"more than {max_bytes} bytes on the wire")
        if unpack is None:
            out += chunk
        else:
            _inflate(unpack, chunk, out, max_bytes)
        if len(out) > max_bytes:
            raise Refused(TOO_LARGE, f"more than {max_bytes} bytes decoded")
    if unpack is not None:
        try:
            out += unpack.flush()
        except zlib.error as exc:
            raise Refused(ENCODING, f"unreadable {content_encoding[:30]} body: {exc}") from None
        if not unpack.eof:
            raise Refused(ENCODING, f"{content_encoding[:30]} body cut short")
        if len(out) > max_bytes:
            raise Refused(TOO_LARGE, f"more than {max_bytes} bytes decoded")
    return bytes(out)


def _inflate(unpack: Any, chunk: bytes, out: bytearray, max_bytes: int) -> None:
    """Unpack `chunk` into `out`, never holding more than the cap (+1 byte to notice it)."""
    data = chunk
    try:
        while data and not unpack.eof:
            out += unpack.decompress(data, max_bytes - len(out) + 1)
            if len(out) > max_bytes:
                raise Refused(TOO_LARGE, f"more than {max_bytes} bytes decoded")
            data = unpack.unconsumed_tail
    except zlib.error as exc:
        raise Refused(ENCODING, f"unreadable compressed body: {exc}") from None


#: a JSON string (an unterminated one runs to the end: linear on any input)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, strings left out (no parsing)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(_STEP[b] for b in brackets), default=0)


def _int(raw: str) -> int | float:
    return int(raw) if len(raw.lstrip("-")) <= MAX_INT_DIGITS else math.nan


class NotJson(Exception):
    """Raised by `parse` when the body is not JSON at all (empty, HTML, bad UTF-8)."""


def parse(data: bytes) -> dict[str, Any]:
    """The body as a JSON object. Raises Refused (too deep, not an object) or NotJson."""
    if depth(data) > MAX_DEPTH:
        raise Refused(MALFORMED, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = _json.loads(data.decode("utf-8"), parse_int=_int)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise NotJson() from None
    if not isinstance(value, dict):
        raise Refused(MALFORMED, f"JSON {type(value).__name__}, not an object")
    return value


def judge(status: int, data: bytes) -> dict[str, Any] | None:
    """The body of an answer with `status`; None when it is not JSON and the status is not 200
    (the caller's transient NON_JSON_RESPONSE). Raises Refused."""
    try:
        return parse(data)
    except NotJson:
        if status == 200:
            raise Refused(MALFORMED, "HTTP 200 whose body is not JSON") from None
        return None


# -- the call ------------------------------------------------------------------------------


def fetch(
    method: str,
    url: str,
    limits: Timeouts,
    session: requests.Session,
    *,
    json: Any = None,
    params: Mapping[str, str] | None = None,
) -> Answer:
    """One call through `session` (which judges the URL and every connection: worker/net/guard.py),
    `json` its body, `params` its query; its answer read within `limits`. Raises PortalError:
    TRANSIENT NETWORK_ERROR (connect, reset, one read's timeout), DENIED ENDPOINT_REFUSED (the
    network policy), or BAD_ANSWER with the rule broken. Never any other exception for what the
    peer sends."""
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    body = None
    if json is not None:
        body = _json.dumps(json, allow_nan=False).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params)
    with deadline.bounded(limits.deadline_s) as due:
        try:
            response = guard.request(
                session,
                method,
                url,
                body=body,
                headers=headers,
                timeout=(limits.connect_s, min(limits.read_s, limits.deadline_s)),
            )
        except EndpointRefused as exc:
            raise PortalError(Outcome.DENIED, "ENDPOINT_REFUSED", str(exc)[:300]) from None
        except Exception as exc:  # urllib3's errors, and http.client's on a hostile head
            raise _network(exc, due.expired, limits) from None
        try:
            status, location = response.status, response.headers.get("Location", "")[:2048]
            declared_length(response.headers, limits.max_bytes)
            chunks = _chunks(response)
            data = decode(chunks, response.headers.get("Content-Encoding", ""), limits.max_bytes)
        except Refused as refused:
            if due.expired:  # a head or body cut by the deadline may look malformed
                raise _network(refused, True, limits) from None
            raise bad_answer(refused.code, refused.description, response.status) from None
        except Exception as exc:  # a read cut by the deadline, a reset, a protocol error
            raise _network(exc, due.expired, limits) from None
        finally:
            _done(response)
    if due.expired:  # the socket was shut mid-answer: what was read is a fragment
        raise _network(TimeoutError(), True, limits)
    try:
        return Answer(status, location, judge(status, data))
    except Refused as refused:
        raise bad_answer(refused.code, refused.description, status) from None


def _chunks(response: BaseHTTPResponse) -> Iterable[bytes]:
    """The raw (still encoded) body, chunk by chunk."""
    while True:
        chunk = response.read(CHUNK, decode_content=False)
        if not chunk:
            return
        yield chunk


def _done(response: BaseHTTPResponse) -> None:
    """A read answer: its connection goes back to the pool (read to its end, urllib3 keeps it
    alive; cut short, it is closed first, as requests' `Response.close` does)."""
    with contextlib.suppress(Exception):
        response.close()
    response.release_conn()


def _network(exc: BaseException, expired: bool, limits: Timeouts) -> PortalError:
    """A failed read: past the total deadline it is the peer's (too slow), else the network's
    (named by class only: the URL may carry secrets in its query string)."""
    if expired:
        return bad_answer(TOO_SLOW, f"answer not complete within {limits.deadline_s:g} s")
    return PortalError(Outcome.TRANSIENT, "NETWORK_ERROR", type(exc).__name__)


def finite(value: Any, low: float, high: float) -> float | None:
    """`value` as a float when it is a finite number within [low, high], else None (a bool, a
    string, an integer no float holds, NaN or an infinity are all None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and low <= number <= high else None
