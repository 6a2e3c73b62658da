"""Tokens go only to allowed networks, checked on the address a connection is actually made to.

Real sockets on this machine's loopback range only: names are pointed at 127.0.0.x through the
resolver a policy is built with (`Policy.resolver`, `PortalStore(resolver=...)`), and the one
address a bug would reach when a
refusal fails is a listener of ours on 127.0.0.2, which counts what arrives. "Disallowed" is
`loopback` left out of the allowed networks, or an address that is never allowed (0.0.0.0).
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from b24sim import PortalConfig, Simulator
from worker.errors import PortalError
from worker.flush.batch import send_batch
from worker.flush.call import Timeouts, refresh_tokens, send_status_delivery
from worker.flush.policy import Outcome
from worker.ingest.validation import registration
from worker.net.guard import EndpointRefused, new_session
from worker.net.trust import Policy
from worker.portals.registry import PortalStore
from worker.settings import Settings

PUBLIC_ONLY = frozenset({"public"})
DEV_NETWORKS = frozenset({"public", "loopback"})
TIMEOUTS = Timeouts(1.0, 2.0)
MESSAGES = [{"im": {"chat_id": 1, "message_id": 1}}]


class Hosts:
    """A resolver: each name has a list of answers, one per lookup; the last one repeats."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        answers = self.answers[host]
        return answers.pop(0) if len(answers) > 1 else answers[0]


class Listener:
    """A TCP listener on 127.0.0.2 that never answers: `connections()` counts who got there."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        try:
            self.sock.bind(("127.0.0.2", 0))
        except OSError as exc:
            pytest.skip(f"cannot bind 127.0.0.2 on this machine: {exc}")
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def hosts() -> Hosts:
    return Hosts()


def public(hosts: Hosts) -> Policy:
    return Policy(PUBLIC_ONLY, resolver=hosts)


def dev(hosts: Hosts) -> Policy:
    return Policy(DEV_NETWORKS, resolver=hosts)


@pytest.fixture
def listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.sock.close()


def test_a_name_on_a_disallowed_network_is_refused_before_connecting(
    hosts: Hosts, listener: Listener
) -> None:
    """A portal endpoint that resolves to loopback while only `public` is allowed parks it."""
    hosts.answers["portal-a.test"] = [["127.0.0.2"]]
    session = new_session(public(hosts))
    with pytest.raises(PortalError) as info:
        send_status_delivery(
            f"https://portal-a.test:{listener.port}/rest/",
            "AT-1",
            "c",
            1,
            MESSAGES,
            TIMEOUTS,
            session,
        )
    print(f"\n[networks] refused: {info.value}")
    assert info.value.code == "ENDPOINT_REFUSED"
    assert info.value.outcome is Outcome.DENIED  # parks the portal until portal.register
    assert "127.0.0.2 is loopback" in info.value.description
    assert "DELIVERY_ALLOWED_ENDPOINT_NETWORKS" in info.value.description
    assert listener.connections() == 0, "nothing reached the refused address"


def test_every_resolved_address_must_be_allowed(hosts: Hosts, listener: Listener) -> None:
    """An allowed address among the answers does not let a forbidden one through: nothing is
    connected to, not even the allowed one (our listener)."""
    hosts.answers["localhost"] = [["127.0.0.2", "0.0.0.0"]]
    with pytest.raises(EndpointRefused, match=r"0\.0\.0\.0 is in a network that never"):
        new_session(dev(hosts)).get(f"http://localhost:{listener.port}/", timeout=1)
    assert listener.connections() == 0


def test_a_dns_answer_that_changes_is_checked_again_on_connect(
    hosts: Hosts, sim: Simulator
) -> None:
    """DNS rebinding: the first lookup gives an allowed address, the next a forbidden one.

    The connection goes to the address that was checked (the name itself resolves nowhere on
    this machine, so a second, unchecked lookup by the HTTP stack would fail differently), and
    the next connection checks the new answer and is refused.
    """
    creds = sim.add_portal(PortalConfig(member_id="rebind"))
    port = sim.base_url.rsplit(":", 1)[1]
    hosts.answers["localhost"] = [["127.0.0.1"], ["0.0.0.0"]]  # 0.0.0.0: never allowed
    url = f"http://localhost:{port}/rebind/rest/imconnector.send.status.delivery"
    body = {"CONNECTOR": "c", "LINE": 1, "MESSAGES": MESSAGES, "auth": creds.access_token}
    session = new_session(dev(hosts))
    first = session.post(url, json=body, timeout=2)
    assert first.status_code < 500 and hosts.lookups == ["localhost"]
    session.close()  # a new connection: the name is resolved (and checked) again
    with pytest.raises(EndpointRefused, match=r"0\.0\.0\.0 is in a network that never"):
        session.post(url, json=body, timeout=2)
    assert hosts.lookups == ["localhost", "localhost"]
    assert sim.counters("rebind")["calls"] == 1


def test_a_redirect_to_a_disallowed_address_is_refused(hosts: Hosts, listener: Listener) -> None:
    """A followed redirect connects through the same guard as the first request."""
    target = f"https://moved.test:{listener.port}/rest/"
    hosts.answers["moved.test"] = [["127.0.0.2"]]

    class Moved(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = int(server.server_address[1])
        # the first hop is trusted like the operator's OAuth URL, so only the redirect is judged
        policy = Policy(PUBLIC_ONLY, frozenset({("127.0.0.1", port)}), hosts)
        session = new_session(policy)
        with pytest.raises(EndpointRefused, match=r"moved\.test: address 127\.0\.0\.2 is loopback"):
            session.get(f"http://127.0.0.1:{port}/rest/", timeout=2)
        assert hosts.lookups == ["moved.test"]
        assert listener.connections() == 0
    finally:
        server.shutdown()
        server.server_close()


def test_an_allowed_name_connects_and_keeps_its_host_header(hosts: Hosts, sim: Simulator) -> None:
    """The connection goes to the checked address; the request still names the host."""
    creds = sim.add_portal(PortalConfig(member_id="named"))
    port = sim.base_url.rsplit(":", 1)[1]
    hosts.answers["localhost"] = [["127.0.0.1"]]
    time_block = send_status_delivery(
        f"http://localhost:{port}/named/rest/",
        creds.access_token,
        "c",
        1,
        MESSAGES,
        TIMEOUTS,
        new_session(dev(hosts)),
    )
    assert isinstance(time_block, dict)
    assert hosts.lookups == ["localhost"]
    assert len(sim.accepted("named")) == 1


def test_the_request_still_names_the_host(hosts: Hosts) -> None:
    """Connecting to the checked address does not change the `Host` the server sees."""

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = str(self.headers.get("Host")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = int(server.server_address[1])
        hosts.answers["localhost"] = [["127.0.0.1"]]  # http:// needs a loopback name
        response = new_session(dev(hosts)).get(f"http://localhost:{port}/", timeout=2)
        assert response.text == f"localhost:{port}"
        assert hosts.lookups == ["localhost"], "connected to the checked 127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_still_verifies_the_certificate_for_the_host_name(hosts: Hosts, tmp_path: Path) -> None:
    """Connecting to the checked address keeps SNI and hostname verification: the certificate
    for `portal-tls.test` is accepted under that name, refused under another name that
    resolves to the same address."""
    cert, key = _self_signed(tmp_path, "portal-tls.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment,misc,return-value]

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = int(server.server_address[1])
        hosts.answers["portal-tls.test"] = [["127.0.0.1"]]
        hosts.answers["other-name.test"] = [["127.0.0.1"]]
        session = new_session(dev(hosts))
        response = session.get(f"https://portal-tls.test:{port}/", verify=str(cert), timeout=2)
        assert response.text == "ok" and seen_sni == ["portal-tls.test"]
        with pytest.raises(requests.exceptions.SSLError, match=r"[Hh]ostname mismatch"):
            session.get(f"https://other-name.test:{port}/", verify=str(cert), timeout=2)
    finally:
        server.shutdown()
        server.server_close()


def test_the_calls_path_verifies_certificates_against_the_ca_bundle(
    hosts: Hosts, tmp_path: Path
) -> None:
    """A call to a portal goes straight to requests' urllib3 pool (worker/net/guard.py
    `request`), not through `Session.request`: it still verifies the certificate (requests' CA
    bundle, so a self-signed one is refused before a byte of the request is sent) and still
    sends the name (SNI) to the checked address."""
    cert, key = _self_signed(tmp_path, "portal-tls.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment,misc,return-value]
    posts: list[str] = []

    class Counts(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Counts)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = int(server.server_address[1])
        hosts.answers["portal-tls.test"] = [["127.0.0.1"]]
        endpoint = f"https://portal-tls.test:{port}/rest/"
        with pytest.raises(PortalError) as refused:
            send_status_delivery(
                endpoint, "token", "c", 1, MESSAGES, TIMEOUTS, new_session(dev(hosts))
            )
        assert refused.value.outcome is Outcome.TRANSIENT
        assert refused.value.code == "NETWORK_ERROR"
        assert "SSL" in refused.value.description
        assert seen_sni == ["portal-tls.test"] and posts == []
    finally:
        server.shutdown()
        server.server_close()


def test_the_operators_internal_oauth_host_receives_the_refresh_only(
    hosts: Hosts, listener: Listener, settings: Settings
) -> None:
    """BITRIX24_OAUTH_URL on an internal host (our listener on 127.0.0.2, only `public`
    allowed): the refresh connects to it, trusted as set; a portal whose client_endpoint names
    that host gets nothing, not even a connection: its token stays here."""
    internal = f"https://oauth.corp.test:{listener.port}"
    hosts.answers["oauth.corp.test"] = [["127.0.0.2"]]
    s = dataclasses.replace(
        settings, oauth_url=internal + "/oauth/token/", allowed_endpoint_networks="public"
    )
    s.validate()
    trust = s.trust()
    with pytest.raises(PortalError) as info:
        send_status_delivery(
            internal + "/rest/",
            "PORTAL-TOKEN",
            "c",
            1,
            MESSAGES,
            TIMEOUTS,
            new_session(trust.portal_policy(hosts)),
        )
    assert info.value.code == "ENDPOINT_REFUSED" and info.value.outcome is Outcome.DENIED
    assert "127.0.0.2 is loopback" in info.value.description
    assert listener.connections() == 0, "the portal's call reached the operator's host"
    with pytest.raises(PortalError) as refresh:  # the listener never answers: a timeout
        refresh_tokens(
            s.oauth_url or "",
            "id",
            "secret",
            "RT",
            Timeouts(1.0, 0.5),
            new_session(trust.oauth_policy(hosts)),
        )
    assert refresh.value.code == "NETWORK_ERROR"
    assert listener.connections() == 1, "the refresh reached the operator's OAuth host"


def test_a_redirect_target_is_judged_before_it_is_stored(
    hosts: Hosts, r: redis.Redis, settings: Settings
) -> None:
    """A portal redirects to a name that resolves to an address never allowed: the move is
    refused when the name is resolved, before the new address is stored."""
    hosts.answers["moved.test"] = [["169.254.169.254"]]
    store = PortalStore(r, settings, resolver=hosts)
    old = "http://127.0.0.1:9/rest/"
    payload = {
        "member_id": "m1",
        "domain": "m1.example",
        "client_endpoint": old,
        "access_token": "AT",
        "refresh_token": "RT",
    }
    store.register(registration(payload, settings.endpoint_networks))
    with pytest.raises(PortalError) as info:
        store.move("m1", old, "https://moved.test/rest/")
    assert info.value.code == "UNSAFE_REDIRECT" and info.value.outcome is Outcome.DENIED
    assert "never receives tokens" in info.value.description
    assert r.hget(store.keys.portal("m1"), "client_endpoint") == old.encode()
    hosts.answers["fine.test"] = [["127.0.0.1"]]
    assert store.move("m1", old, "https://fine.test/rest/"), "an allowed target is stored"


def test_the_direct_and_the_batch_call_refuse_an_endpoint_alike(
    hosts: Hosts, listener: Listener
) -> None:
    """One rule for both calls: the same refused endpoint is ENDPOINT_REFUSED (the portal is
    parked), whether the group goes direct or packed in a `batch` request."""
    hosts.answers["portal-b.test"] = [["127.0.0.2"]]
    session = new_session(public(hosts))
    for endpoint in (f"https://portal-b.test:{listener.port}/rest/", "http://p.example/rest/"):
        with pytest.raises(PortalError) as direct:
            send_status_delivery(endpoint, "AT", "c", 1, MESSAGES, TIMEOUTS, session)
        with pytest.raises(PortalError) as packed:
            send_batch(
                endpoint, "AT", {"g0": "imconnector.send.status.delivery?x=1"}, TIMEOUTS, session
            )
        assert direct.value.code == packed.value.code == "ENDPOINT_REFUSED"
        assert direct.value.outcome is packed.value.outcome is Outcome.DENIED
        assert direct.value.description == packed.value.description
    assert listener.connections() == 0
