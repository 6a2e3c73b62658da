"""Hostile portals (b24sim/hostile.py): an ADVERSARY's behaviours, not platform facts.

No Bitrix24 documentation describes these answers; they are what anyone running an installation
could make it send. Each test checks that the switch produces the hostile answer as described,
read here with a plain `requests` session (no limits), at loopback only.
"""

from __future__ import annotations

import json
import socket
import time
import zlib

import pytest
import requests

from b24sim import PortalConfig, Simulator

from .conftest import call, payload


def _raw_post(sim: Simulator, member_id: str, limit_s: float) -> tuple[bytes, float]:
    """POST the method on a plain socket; what arrives within `limit_s`, and when it stopped."""
    endpoint = sim.client_endpoint(member_id)
    host, port = endpoint.split("//")[1].split("/")[0].split(":")
    path = "/" + endpoint.split("//")[1].split("/", 1)[1] + "imconnector.send.status.delivery"
    creds = sim.credentials(member_id)
    body = json.dumps(payload(creds)).encode()
    started = time.monotonic()
    got = b""
    with socket.create_connection((host, int(port)), timeout=limit_s) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        while time.monotonic() - started < limit_s:
            sock.settimeout(max(0.01, limit_s - (time.monotonic() - started)))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            got += chunk
    return got, time.monotonic() - started


def test_an_unknown_kind_is_refused_with_the_kinds_named(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="unknown hostile kind 'nope'; one of gzip_bomb"):
        sim.add_portal(PortalConfig(member_id="h1", hostile="nope"))


def test_gzip_bomb_is_small_on_the_wire_and_huge_unpacked(
    sim: Simulator, session: requests.Session
) -> None:
    creds = sim.add_portal(PortalConfig(member_id="h1", hostile="gzip_bomb"))
    r = session.post(
        creds.client_endpoint + "imconnector.send.status.delivery",
        json=payload(creds),
        stream=True,
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
    wire = r.raw.read(decode_content=False)
    assert len(wire) < 256 * 1024  # under any sane cap on the wire
    unpacked = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(wire, 200 * 1024 * 1024)
    assert len(unpacked) >= 128 * 1024 * 1024
    assert sim.accepted("h1") == [] and sim.counters("h1")["hostile_answers"] == 1


def test_drip_sends_its_head_at_once_and_one_body_byte_per_half_second(sim: Simulator) -> None:
    sim.add_portal(PortalConfig(member_id="h1", hostile="drip"))
    got, took = _raw_post(sim, "h1", limit_s=2.6)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert length > 600 and 3 <= len(body) <= 6  # ~1 byte per 0.5 s of the 2.6 s waited
    assert took >= 2.5


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("deep_json", lambda b: b == b"[" * 100_000),
        ("bare_number", lambda b: json.loads(b) == 42),
    ],
)
def test_bodies_that_break_the_json_rules(
    sim: Simulator, session: requests.Session, kind: str, check: object
) -> None:
    creds = sim.add_portal(PortalConfig(member_id="h1", hostile=kind))
    r = call(session, creds)
    assert r.status_code == 200 and callable(check) and check(r.content)
    assert sim.accepted("h1") == []


def test_bad_numbers_accepts_the_items_then_answers_numbers_no_float_holds(
    sim: Simulator, session: requests.Session
) -> None:
    creds = sim.add_portal(PortalConfig(member_id="h1"))
    sim.set_hostile("h1", "bad_numbers")
    r = call(session, creds, payload(creds, n=2))
    answer = r.json()  # Python's parser takes NaN, Infinity and 1e999 (as inf)
    assert r.status_code == 200 and answer["result"]["SUCCESS"] is True
    t = answer["time"]
    assert t["operating_reset_at"] == 1e17 and t["start"] == float("inf")
    assert t["duration"] != t["duration"] and len(str(t["operating"])) == 400  # NaN; 400 digits
    with pytest.raises(OverflowError):
        float(t["operating"])
    assert len(sim.accepted("h1")) == 2  # the portal did take the batch


def test_the_switch_over_http_and_back_to_honest(sim: Simulator, session: requests.Session) -> None:
    creds = sim.add_portal(PortalConfig(member_id="h1"))
    on = session.post(f"{sim.base_url}/_sim/hostile", json={"portal": "h1", "kind": "bare_number"})
    assert on.json() == {"ok": True} and call(session, creds).content == b"42"
    session.post(f"{sim.base_url}/_sim/hostile", json={"portal": "h1", "kind": ""})
    assert call(session, creds).json()["result"]["SUCCESS"] is True
    bad = session.post(f"{sim.base_url}/_sim/hostile", json={"portal": "h1", "kind": "x"})
    assert bad.status_code == 400 and "unknown hostile kind" in bad.text
