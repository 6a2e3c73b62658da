"""The retry policy's newer rows against the simulator and real workers: moved portals, the codes
the official SDKs handle, parkings of a portal or of one connector, PORTAL_DELETED's probe,
HTTP 200 SUCCESS:false, codes in any case. Each test prints what it led to (run with -s).

Platform facts checked: a portal that changed its address answers 301/302/307/308 with Location
and the call is repeated there; errors carry no `time` block; PORTAL_DELETED comes with 403 (the
rest module); IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR when the connector is not active on the
portal (imconnector input.php routing(); the delivery path reads no line); older portals
answered HTTP 200 SUCCESS:false; the SDKs match codes ignoring case.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from b24sim import Fault, PortalConfig, Simulator
from tests.harness import Fleet, confirmation, delivered_ids, producer, stats, wait_for
from tests.integration.platform_util import (
    client,
    dead,
    parked_reason,
    portal,
    report,
    start,
)
from tests.integration.test_cli import lines, run
from worker.ops.parking import unpark
from worker.store.keys import Keys

METHOD = "imconnector.send.status.delivery"


@pytest.mark.parametrize("status", [302, 301, 307, 308])
def test_a_moved_portal_is_followed_once_and_its_new_address_stored(
    fleet: Fleet, sim: Simulator, redis_url: str, status: int
) -> None:
    p = start(fleet, sim, redis_url)
    new_endpoint = sim.move_portal("p1", status=status)
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(client(fleet)).get("delivered") == 1, what="delivery at the new address")
    p.confirm(**confirmation("p1", 2))
    wait_for(lambda: stats(client(fleet)).get("delivered") == 2, what="second delivery")
    report(f"portal moved ({status})", sim, fleet, "p1")
    assert portal(fleet, "p1")["client_endpoint"] == new_endpoint
    outcomes = sim.call_outcomes("p1")
    assert outcomes.get(f"redirect_{status}") == 1, "later calls go straight to the new address"
    assert outcomes.get("success") == 2 and not dead(fleet)


class _Hostile(BaseHTTPRequestHandler):
    """A portal endpoint that redirects every call to `location` and counts what it gets."""

    location: ClassVar[str] = ""
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.paths.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    _Hostile.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "location",
    [
        f"http://evil.example.com/rest/{METHOD}",  # http off loopback
        "/collect?stolen=1",  # the method path not kept
        f"http://user:pw@127.0.0.1:{{port}}/rest/{METHOD}",  # credentials in the URL
    ],
)
def test_an_unsafe_redirect_is_refused_and_the_portal_parked(
    fleet: Fleet, sim: Simulator, redis_url: str, hostile: ThreadingHTTPServer, location: str
) -> None:
    port = hostile.server_address[1]
    _Hostile.location = location.replace("{port}", str(port))
    fleet.start(concurrency=2, beat=True)
    p = producer(redis_url)
    creds = sim.add_portal(PortalConfig(member_id="h1")).as_register_kwargs()
    p.register_portal(**{**creds, "client_endpoint": f"http://127.0.0.1:{port}/h1/rest/"})
    wait_for(lambda: portal(fleet, "h1").get("version"), what="registration")
    p.confirm(**confirmation("h1", 1))
    wait_for(lambda: parked_reason(fleet, "h1") == "UNSAFE_REDIRECT", what="parking")
    report(f"unsafe redirect to {_Hostile.location}", sim, fleet)
    print(f"  the hostile endpoint saw: {_Hostile.paths}")
    assert _Hostile.paths == [f"/h1/rest/{METHOD}"], "nothing was sent to the redirect target"
    assert portal(fleet, "h1")["client_endpoint"] == f"http://127.0.0.1:{port}/h1/rest/"
    assert not dead(fleet)


def test_invalid_token_is_refreshed_once_like_no_auth_found(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    p = start(fleet, sim, redis_url)
    sim.inject(Fault(error="invalid_token", count=1, portal="p1"))
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(client(fleet)).get("delivered") == 1, what="delivery after refresh")
    sim.inject(Fault(error="invalid_token", portal="p1"))  # every token refused
    p.confirm(**confirmation("p1", 2))
    wait_for(lambda: parked_reason(fleet, "p1") == "invalid_token", what="parking")
    report("invalid_token", sim, fleet, "p1")
    assert sim.counters("p1")["refreshes"] == 2 and not dead(fleet)


@pytest.mark.parametrize("code", ["ACCESS_DENIED", "NOT_INSTALLED", "PAYMENT_REQUIRED"])
def test_conditions_of_the_portal_park_it_until_unpark(
    fleet: Fleet, sim: Simulator, redis_url: str, code: str
) -> None:
    p = start(fleet, sim, redis_url, DELIVERY_BATCH_SIZE="1")
    fault = sim.inject(Fault(error=code, portal="p1"))
    for i in (1, 2, 3):  # three batches of one
        p.confirm(**confirmation("p1", i))
    wait_for(lambda: parked_reason(fleet, "p1") == code, what="parking")
    wait_for(lambda: stats(client(fleet)).get("ingested") == 3, what="ingest")
    calls_while_parked = len(sim.calls("p1"))
    report(f"{code}, parked", sim, fleet, "p1")
    sim.clear_faults(fault_id=fault)
    assert unpark(client(fleet), Keys(), "p1") == 1
    wait_for(lambda: stats(client(fleet)).get("delivered") == 3, what="delivery after unpark")
    report(f"{code}, after unpark", sim, fleet, "p1")
    assert calls_while_parked == 1, "one answer parks the whole portal: no batch after batch"
    assert not dead(fleet)


def test_wrong_client_from_the_token_endpoint_at_http_200_parks(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    p = start(fleet, sim, redis_url)
    sim.inject(Fault(error="wrong_client", target="oauth", portal="p1"))
    sim.expire_tokens("p1")
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: parked_reason(fleet, "p1") == "wrong_client", what="parking")
    report("wrong_client at HTTP 200", sim, fleet, "p1")
    assert [r.status for r in sim.refresh_requests()] == [200]
    assert not dead(fleet)


def test_a_connector_not_active_on_the_portal_parks_that_connector_only(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    config = PortalConfig(
        member_id="p1", connectors=["myconnector", "other"], active_connectors=["other"]
    )
    p = start(fleet, sim, redis_url, config)
    p.confirm(**confirmation("p1", 1, connector="myconnector"))
    p.confirm(**confirmation("p1", 2, connector="myconnector", line=108))
    wait_for(
        lambda: (
            parked_reason(fleet, "p1", "myconnector")
            == "IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR"
        ),
        what="the connector's parking",
    )
    for i in range(3, 6):
        p.confirm(**confirmation("p1", i, connector="other"))
    wait_for(lambda: set(delivered_ids(sim, "p1")) == {3, 4, 5}, what="the other connector")
    assert parked_reason(fleet, "p1") == "", "the portal itself is not parked"
    [shown] = lines(run(redis_url, "parked"))  # the operator's view
    assert shown["member_id"] == "p1" and shown["connector"] == "myconnector"
    assert shown["block_reason"] == "IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR"
    assert shown["pending"] == 2
    report("IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR, parked", sim, fleet, "p1")
    sim.portal_config("p1").active_connectors = None  # the operator activates the connector
    [done] = lines(run(redis_url, "unpark", "p1", "--connector", "myconnector"))
    assert done == {"portal": "p1", "cleared": True, "groups_due": 2}
    wait_for(lambda: set(delivered_ids(sim, "p1")) == {1, 2, 3, 4, 5}, what="after unpark")
    report("IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR, after unpark", sim, fleet, "p1")
    assert not dead(fleet)


def test_portal_deleted_parks_probes_with_one_call_and_never_dead_letters(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    p = start(fleet, sim, redis_url, DELIVERY_OVERLOAD_PARK_S="0.5")
    sim.inject(Fault(error="PORTAL_DELETED", count=6, portal="p1"))  # more than max attempts (4)
    for line in (1, 2, 3):
        p.confirm(**confirmation("p1", line, line=line))
    wait_for(lambda: stats(client(fleet)).get("delivered") == 3, timeout_s=30, what="delivery")
    report("PORTAL_DELETED (403)", sim, fleet, "p1")
    refused = [c.at for c in sim.calls("p1") if c.outcome == "PORTAL_DELETED"]
    assert len(refused) == 6 and not dead(fleet)
    # the first calls may overlap (DELIVERY_PORTAL_MAX_INFLIGHT=2 before the first answer); after
    # the first parking, one probe per parking period
    gaps = [b - a for a, b in itertools.pairwise(refused[1:])]
    assert min(gaps) >= 0.45, f"one probe per parking period, not one call per group: {gaps}"


def test_success_false_at_http_200_is_dead_lettered_at_once(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    p = start(fleet, sim, redis_url)
    sim.inject(Fault(kind="success_false", count=1, portal="p1"))
    p.confirm(**confirmation("p1", 1))
    letters = wait_for(lambda: dead(fleet), what="dead letter")
    report("HTTP 200 SUCCESS:false", sim, fleet, "p1")
    assert letters[0]["code"] == "SUCCESS_FALSE" and letters[0]["attempts"] == 1


def test_codes_are_matched_ignoring_case_and_recorded_canonically(
    fleet: Fleet, sim: Simulator, redis_url: str
) -> None:
    p = start(fleet, sim, redis_url)
    sim.inject(Fault(error="Query_Limit_Exceeded", status=503, count=2, portal="p1"))
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: stats(client(fleet)).get("delivered") == 1, what="delivery after 503s")
    report("codes in another case", sim, fleet, "p1")
    assert stats(client(fleet))["api_error:QUERY_LIMIT_EXCEEDED"] == 2 and not dead(fleet)
