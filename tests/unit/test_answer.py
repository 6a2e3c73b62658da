"""The bounded answer reader (worker/net/answer.py): its pure core alone, and `fetch` against a
tiny loopback server that sends whatever bytes a test gives it (an adversary's answers)."""

from __future__ import annotations

import gzip
import math
import socket
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.errors import PortalError
from worker.flush.policy import Outcome
from worker.net import guard
from worker.net.answer import (
    ENCODING,
    MALFORMED,
    MAX_DEPTH,
    TOO_LARGE,
    TOO_SLOW,
    NotJson,
    Refused,
    Timeouts,
    declared_length,
    decode,
    depth,
    fetch,
    finite,
    judge,
    parse,
)
from worker.net.trust import Policy

CAP = 64 * 1024


def _chunks(data: bytes, size: int = 1000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _code(fn: object, *args: object) -> str:
    with pytest.raises(Refused) as caught:
        fn(*args)  # type: ignore[operator]
    return caught.value.code


# -- decode --------------------------------------------------------------------------------


def test_decode_identity_gzip_and_deflate() -> None:
    body = b'{"result": {"SUCCESS": true}}'
    assert decode(_chunks(body), "", CAP) == body
    assert decode(_chunks(body), "identity", CAP) == body
    assert decode(_chunks(gzip.compress(body)), "gzip", CAP) == body
    assert decode(_chunks(zlib.compress(body)), "Deflate", CAP) == body


def test_a_gzip_bomb_is_refused_holding_no_more_than_the_cap() -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024), 9)
    assert len(bomb) < CAP * 2
    started = time.monotonic()
    assert _code(decode, _chunks(bomb, 16 * 1024), "gzip", 4 * CAP) == TOO_LARGE
    assert time.monotonic() - started < 5  # stops at the cap, never unpacks the 64 MiB


def test_too_many_bytes_on_the_wire_or_announced() -> None:
    assert _code(decode, _chunks(b"x" * (CAP + 1)), "", CAP) == TOO_LARGE
    assert _code(declared_length, {"Content-Length": str(CAP + 1)}, CAP) == TOO_LARGE
    declared_length({"Content-Length": "12"}, CAP)  # a small (maybe false) length passes
    declared_length({"Content-Length": "-5"}, CAP)  # nonsense is caught while reading


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress", "gzip, br"])
def test_unknown_or_stacked_encodings_are_refused(encoding: str) -> None:
    assert _code(decode, [b"anything"], encoding, CAP) == ENCODING


def test_a_cut_or_broken_compressed_body_is_refused() -> None:
    packed = gzip.compress(b"x" * 1000)
    assert _code(decode, [packed[:-12]], "gzip", CAP) == ENCODING
    assert _code(decode, [b"not gzip at all"], "gzip", CAP) == ENCODING


# -- parse ---------------------------------------------------------------------------------


def test_json_nested_past_any_recursion_limit_is_malformed_not_a_recursion_error() -> None:
    assert depth(b"[" * 100_000) == 100_000
    assert _code(parse, b"[" * 100_000) == MALFORMED
    assert _code(parse, b'{"a":' * 1000 + b"1" + b"}" * 1000) == MALFORMED
    nested_ok = b'{"a":' * (MAX_DEPTH - 1) + b"1" + b"}" * (MAX_DEPTH - 1)
    assert isinstance(parse(nested_ok), dict)


def test_brackets_inside_strings_do_not_count_and_strings_cannot_stall_the_scan() -> None:
    assert depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["}') == 1
    started = time.monotonic()
    depth(b'"\\"' * 200_000)  # every quote opens an unterminated string
    depth(b'"' + b"\\" * 300_000)
    assert time.monotonic() - started < 2


def test_a_body_that_is_json_but_not_an_object_is_malformed() -> None:
    for body in (b"42", b"[]", b'"text"', b"null", b"true", b"1e999"):
        assert _code(parse, body) == MALFORMED


def test_numbers_no_float_holds_are_kept_without_a_crash() -> None:
    parsed = parse(b'{"a": ' + b"9" * 400 + b', "b": ' + b"9" * 5000 + b', "c": NaN, "d": 1e999}')
    assert math.isnan(parsed["a"]) and math.isnan(parsed["b"]) and math.isnan(parsed["c"])
    assert parsed["d"] == math.inf
    assert parse(b'{"n": 12345}')["n"] == 12345


def test_not_json_is_malformed_at_200_and_left_to_the_caller_otherwise() -> None:
    html = b"<html>502 Bad Gateway</html>"
    with pytest.raises(NotJson):
        parse(html)
    assert judge(502, html) is None
    assert judge(302, b"") is None
    assert _code(judge, 200, html) == MALFORMED
    assert _code(judge, 200, b"\xff\xfe{") == MALFORMED


def test_finite_takes_only_finite_numbers_in_range() -> None:
    assert finite(1.5e9, 1e9, 1e10) == 1.5e9
    for value in (True, "1700000000", None, math.inf, math.nan, 10**400, 1e17, -1, [1]):
        assert finite(value, 1e9, 1e10) is None


# -- property: any bytes, any headers, any JSON --------------------------------------------

ENCODINGS = st.one_of(
    st.sampled_from(["", "identity", "gzip", "deflate", "x-gzip", "br", "gzip, deflate"]),
    st.text(max_size=20),
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


def _encode_json(value: object) -> bytes:
    import json

    return json.dumps(value).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=4000),
        JSON.map(_encode_json),
        st.binary(max_size=2000).map(gzip.compress),
        st.integers(1, 3000).map(lambda n: b"[" * n + b"{" * n),
    ),
    encoding=ENCODINGS,
    status=st.sampled_from([200, 201, 302, 401, 500, 503]),
    chunk=st.integers(1, 5000),
    cap=st.integers(16, 8192),
)
def test_the_core_returns_a_body_or_refuses_and_never_raises_anything_else(
    body: bytes, encoding: str, status: int, chunk: int, cap: int
) -> None:
    result: object
    try:
        result = judge(status, decode(_chunks(body, chunk), encoding, cap))
    except Refused as refused:
        result = refused.code
    assert result is None or isinstance(result, dict) or result in (TOO_LARGE, ENCODING, MALFORMED)


# -- fetch against a loopback server that sends what it is given ---------------------------


class RawServer:
    """Answers every connection with the bytes of `answer`: the first `at_once` bytes at once,
    the rest one every `pace_s` (0: all at once)."""

    def __init__(self) -> None:
        self.answer = b""
        self.pace_s = 0.0
        self.at_once = 0
        self.last_request = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                self.last_request = conn.recv(65536)  # the request (small)
                if self.pace_s <= 0:
                    conn.sendall(self.answer)
                    return
                conn.sendall(self.answer[: self.at_once])
                for i in range(self.at_once, len(self.answer)):
                    if self.stop.wait(self.pace_s):
                        return
                    conn.sendall(self.answer[i : i + 1])
            except OSError:
                return


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawServer]:
    server = RawServer()
    try:
        yield server
    finally:
        server.stop.set()
        server.sock.close()


def _head(status: int, headers: dict[str, str], body: bytes, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


#: a session that may reach loopback, as the tests' settings allow
SESSION = guard.new_session(Policy(frozenset({"public", "loopback"})))


def _fetch(server: RawServer, total_s: float = 5.0, cap: int = CAP) -> object:
    url = f"http://127.0.0.1:{server.port}/rest/m"
    return fetch("POST", url, Timeouts(2.0, 5.0, total_s, cap), SESSION, json={})


def test_fetch_reads_a_gzip_answer_and_refuses_a_bomb(raw_server: RawServer) -> None:
    raw_server.pace_s = 0
    raw_server.answer = _head(200, {"Content-Encoding": "gzip"}, gzip.compress(b'{"a": 1}'))
    answer = _fetch(raw_server)
    assert getattr(answer, "body", None) == {"a": 1}
    bomb = gzip.compress(b" " * (32 * 1024 * 1024), 9)
    raw_server.answer = _head(200, {"Content-Encoding": "gzip"}, bomb)
    with pytest.raises(PortalError) as caught:
        _fetch(raw_server, cap=256 * 1024)
    assert (caught.value.outcome, caught.value.code) == (Outcome.BAD_ANSWER, TOO_LARGE)


@pytest.mark.parametrize("where", ["body", "head"])
def test_fetch_ends_a_drip_at_the_total_deadline(raw_server: RawServer, where: str) -> None:
    body = b'{"result": {"SUCCESS": true}}' + b" " * 100
    raw_server.answer = _head(200, {}, body)
    # "body": the head at once, the body dripped; "head": the status line dripped too
    raw_server.at_once = len(raw_server.answer) - len(body) if where == "body" else 0
    raw_server.pace_s = 0.05
    started = time.monotonic()
    with pytest.raises(PortalError) as caught:
        _fetch(raw_server, total_s=1.0)
    took = time.monotonic() - started
    raw_server.pace_s = 0
    assert (caught.value.outcome, caught.value.code) == (Outcome.BAD_ANSWER, TOO_SLOW)
    assert took < 4  # 1 s deadline (and a loaded machine's slack), not the drip's 7 s


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 204, 301, 400, 401, 500, 502]),
    encoding=st.one_of(st.none(), ENCODINGS.filter(lambda e: "\r" not in e and "\n" not in e)),
    body=st.one_of(st.binary(max_size=3000), JSON.map(_encode_json)),
    length_lie=st.one_of(st.none(), st.integers(0, 10_000)),
    gzipped=st.booleans(),
)
def test_fetch_returns_an_answer_or_a_portal_error_never_anything_else(
    raw_server: RawServer,
    status: int,
    encoding: str | None,
    body: bytes,
    length_lie: int | None,
    gzipped: bool,
) -> None:
    shown = None if encoding is None else encoding.encode("latin-1", "replace").decode("latin-1")
    headers = {} if shown is None else {"Content-Encoding": shown}
    payload = gzip.compress(body) if gzipped else body
    raw_server.pace_s = 0
    raw_server.answer = _head(status, headers, payload, length_lie)
    result: object
    try:
        result = getattr(_fetch(raw_server, total_s=3.0, cap=2048), "body", "no answer")
    except PortalError as error:
        result = error.outcome
    assert (
        result is None
        or isinstance(result, dict)
        or result in (Outcome.BAD_ANSWER, Outcome.TRANSIENT)
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.text(max_size=60),
    whole=st.one_of(st.none(), st.text(max_size=60)),
    params=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=8))),
)
def test_fetch_of_any_url_returns_an_answer_or_a_portal_error(
    raw_server: RawServer, path: str, whole: str | None, params: dict[str, str] | None
) -> None:
    """A portal names its own endpoint (and a redirect's target): whatever the URL, the calls'
    path (worker/net/guard.py `request`, which parses it with urllib3, not requests) answers
    or refuses with a PortalError, and a control character never reaches the request line."""
    raw_server.pace_s = 0
    raw_server.answer = _head(200, {}, b'{"result": {"SUCCESS": true}}')
    url = whole if whole is not None else f"http://127.0.0.1:{raw_server.port}/rest/{path}"
    result: object
    try:
        result = fetch("POST", url, Timeouts(1.0, 2.0, 3.0), SESSION, json={}, params=params).status
    except PortalError as error:
        result = error.outcome
    assert result in (200, Outcome.DENIED, Outcome.TRANSIENT, Outcome.BAD_ANSWER)


def test_a_control_character_in_the_path_is_escaped_not_sent(raw_server: RawServer) -> None:
    raw_server.pace_s = 0
    raw_server.answer = _head(200, {}, b'{"result": {"SUCCESS": true}}')
    url = f"http://127.0.0.1:{raw_server.port}/rest/m\r\nX-Injected: 1"
    assert fetch("POST", url, Timeouts(1.0, 2.0, 3.0), SESSION, json={}).status == 200
    assert (
        raw_server.last_request.split(b"\r\n")[0] == b"POST /rest/m%0D%0AX-Injected:%201 HTTP/1.1"
    )
