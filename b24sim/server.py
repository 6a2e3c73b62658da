"""HTTP layer: keep-alive ThreadingHTTPServer listeners, routing, and the Simulator.

One main listener serves portals, the main OAuth server (index 0) and ``/_sim/``. Each extra OAuth
server (a region) has its own loopback port serving only ``/oauth/token/``; a portal moved to a
new port gets a listener serving only portals.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .control import control
from .core import SimCore
from .faults import Fault
from .portal import PortalConfig
from .replies import Reply, error_reply, redirect_reply
from .validate import parse_params


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], sim: SimCore, role: str, oauth_index: int) -> None:
        self.sim = sim
        self.role = role  # "main", "oauth" or "portal"
        self.oauth_index = oauth_index
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        #: set when the server stops: a dripping answer ends then
        self.closing = threading.Event()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller that hung up (as the worker does on a hostile answer it refuses) is no
        error of the simulator's; anything else is printed as socketserver does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def close_connections(self) -> None:
        with self.conns_lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        ctype = self.headers.get("Content-Type") or ""
        try:
            reply = route(self.server, self.command, url.path, url.query, body, ctype)
        except Exception as exc:  # a simulator bug must not look like a hung server
            reply = error_reply("INTERNAL_SERVER_ERROR", f"simulator error: {exc!r}")
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Unknown"
        extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
        head = (
            f"HTTP/1.1 {reply.status} {phrase}\r\n"
            f"Content-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(reply.body)}\r\n"
            + extra
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        if reply.drip_s <= 0:
            try:
                self.wfile.write(head.encode("latin-1") + reply.body)
            except OSError:  # the caller gave up (a bomb it refused half-read)
                self.close_connection = True
            return
        self.wfile.write(head.encode("latin-1"))  # an adversary's drip (b24sim/hostile.py)
        for i in range(len(reply.body)):
            self.wfile.flush()
            if self.server.closing.wait(reply.drip_s):
                return
            try:
                self.wfile.write(reply.body[i : i + 1])
            except OSError:  # the caller gave up
                self.close_connection = True
                return


def route(server: _Server, verb: str, path: str, query: str, body: bytes, ctype: str) -> Reply:
    sim, role = server.sim, server.role
    if role == "main" and path.startswith("/_sim/"):
        return control(sim, verb, path[len("/_sim/") :].strip("/"), query, body)
    try:
        params = parse_params(query, body, ctype)
    except ValueError:
        params = dict(parse_qsl(query))
    if path.rstrip("/") == "/oauth/token" and role != "portal":
        return sim.oauth_token(params, server.oauth_index)
    parts = [x for x in path.split("/") if x]
    if role == "main" and parts and parts[0] == "rest":  # /rest/{user}/{code}/{method}: webhook
        return sim.rest_call(None, parts[-1] if len(parts) > 1 else "", params, webhook_path=True)
    if role != "oauth" and len(parts) >= 3 and parts[1] == "rest":  # /{prefix}/rest/{method}
        address = f"{server.base_url}/{parts[0]}/rest/"
        target = sim.resolve(server.base_url, parts[0])
        if target is None:
            return error_reply("PORTAL_NOT_FOUND")
        member_id, redirect = target
        if redirect is not None:
            location = sim.client_endpoint(member_id) + "/".join(parts[2:])
            sim.record_redirect(member_id, parts[-1], address, redirect)
            return redirect_reply(redirect, location + (f"?{query}" if query else ""))
        webhook = len(parts) > 3
        return sim.rest_call(member_id, parts[-1], params, webhook_path=webhook, address=address)
    return error_reply("ERROR_METHOD_NOT_FOUND", status=404)


class Simulator(SimCore):
    """A running simulator: ``start()`` serves in a background thread; also a context manager.

    ``oauth_servers``: extra OAuth servers (regions, indexes 1..n) started with it, each on its own
    port. ``strict``: also apply the spec's element checks (the portal itself does not).
    """

    def __init__(
        self,
        client_id: str = "app.b24sim",
        client_secret: str = "b24sim-secret",  # noqa: S107
        host: str = "127.0.0.1",
        port: int = 0,
        portals: list[PortalConfig] | None = None,
        faults: list[Fault] | None = None,
        seed: int | None = 0,
        oauth_servers: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__(client_id, client_secret, seed, strict)
        self.host = host
        self.port = port
        self._initial_portals = list(portals or [])
        self._initial_oauth = oauth_servers
        for f in faults or []:
            self.inject(f)
        self._server: _Server | None = None
        self._listeners: list[tuple[_Server, threading.Thread]] = []

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.base_url

    def _serve(self, port: int, role: str, oauth_index: int) -> _Server:
        server = _Server((self.host, port), self, role, oauth_index)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"b24sim-{role}",
            daemon=True,
        )
        thread.start()
        self._listeners.append((server, thread))
        return server

    def _open_listener(self, oauth_index: int | None) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        role = "portal" if oauth_index is None else "oauth"
        return self._serve(0, role, oauth_index or 0).base_url

    def start(self) -> Simulator:
        if self._server is not None:
            return self
        self._server = self._serve(self.port, "main", 0)
        for _ in range(self._initial_oauth):
            self.add_oauth_server()
        for cfg in self._initial_portals:
            self.add_portal(cfg)
        self._initial_portals = []
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server = None
        listeners, self._listeners = self._listeners, []
        for server, thread in listeners:
            server.closing.set()
            server.shutdown()
            server.close_connections()
            server.server_close()
            thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
