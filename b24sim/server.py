"""HTTP layer: keep-alive ThreadingHTTPServer, routing, ``/_sim/`` control endpoints, Simulator."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .core import SimCore
from .faults import Fault
from .portal import PortalConfig
from .replies import Reply, error_reply, json_reply
from .validate import parse_params


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

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
            reply = route(self.server.sim, self.command, url.path, url.query, body, ctype)
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
        head = (
            f"HTTP/1.1 {reply.status} {phrase}\r\n"
            f"Content-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(reply.body)}\r\n"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        self.wfile.write(head.encode("latin-1") + reply.body)


def route(sim: Simulator, verb: str, path: str, query: str, body: bytes, ctype: str) -> Reply:
    if path.startswith("/_sim/"):
        return control(sim, verb, path[len("/_sim/") :].strip("/"), query, body)
    try:
        params = parse_params(query, body, ctype)
    except ValueError:
        params = dict(parse_qsl(query))
    if path.rstrip("/") == "/oauth/token":
        return sim.oauth_token(params)
    parts = [x for x in path.split("/") if x]
    if parts and parts[0] == "rest":  # /rest/{user}/{code}/{method}: a webhook URL
        return sim.rest_call(None, parts[-1] if len(parts) > 1 else "", params, webhook_path=True)
    if len(parts) >= 3 and parts[1] == "rest":  # /{member_id}/rest/{method}
        webhook = len(parts) > 3
        return sim.rest_call(parts[0], parts[-1], params, webhook_path=webhook)
    return error_reply("ERROR_METHOD_NOT_FOUND", status=404)


def control(sim: Simulator, verb: str, name: str, query: str, body: bytes) -> Reply:
    try:
        data: dict[str, Any] = json.loads(body) if body.strip() else {}
        data.update(dict(parse_qsl(query)))
        return _control(sim, verb, name, data)
    except (ValueError, TypeError, KeyError) as exc:
        return json_reply(400, {"error": "SIM_BAD_REQUEST", "error_description": str(exc)})


def _ok(fn: Callable[[], None]) -> dict[str, Any]:
    fn()
    return {"ok": True}


def _control(sim: Simulator, verb: str, name: str, data: dict[str, Any]) -> Reply:
    portal = data.get("portal")
    fid = data.get("id")
    actions: dict[tuple[str, str], Callable[[], Any]] = {
        ("GET", "state"): lambda: sim.state(
            records=data.get("records", "1") not in ("0", 0, False)
        ),
        ("POST", "portals"): lambda: sim.add_portal(PortalConfig.from_dict(data)).to_dict(),
        ("POST", "faults"): lambda: {"id": sim.inject(Fault.from_dict(data))},
        ("DELETE", "faults"): lambda: {
            "removed": sim.clear_faults(portal, int(fid) if fid else None)
        },
        ("POST", "reset"): lambda: _ok(sim.reset),
        ("POST", "clear_records"): lambda: _ok(sim.clear_records),
        ("POST", "expire_tokens"): lambda: {"expired": sim.expire_tokens(portal)},
        ("POST", "revoke_refresh"): lambda: _ok(
            lambda: sim.revoke_refresh(str(portal), bool(data.get("revoked", True)))
        ),
        ("POST", "webhook_token"): lambda: {"token": sim.webhook_token(str(portal))},
        ("POST", "credentials"): lambda: sim.issue_credentials(str(portal)).to_dict(),
    }
    action = actions.get((verb, name))
    if action is None:
        return json_reply(
            404, {"error": "SIM_NOT_FOUND", "error_description": f"{verb} /_sim/{name}"}
        )
    return json_reply(200, action())


class Simulator(SimCore):
    """A running simulator: ``start()`` serves in a background thread; also a context manager."""

    def __init__(
        self,
        client_id: str = "app.b24sim",
        client_secret: str = "b24sim-secret",  # noqa: S107
        host: str = "127.0.0.1",
        port: int = 0,
        portals: list[PortalConfig] | None = None,
        faults: list[Fault] | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(client_id, client_secret, seed)
        self.host = host
        self.port = port
        self._initial_portals = list(portals or [])
        for f in faults or []:
            self.inject(f)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="b24sim",
            daemon=True,
        )
        self._thread.start()
        for cfg in self._initial_portals:
            self.add_portal(cfg)
        self._initial_portals = []
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
