"""A private RabbitMQ node for the tests, started the way `redis_local` starts Redis.

The node runs the machine's `rabbitmq-server` (Debian's package puts it in /usr/lib/rabbitmq/bin)
under a node name, AMQP port, distribution port, data and log folders of its own, so stopping,
killing or restarting it never touches a RabbitMQ the machine already runs. No plugins.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from kombu import Connection

from devtools.local_server import LocalServer
from devtools.redis_local import free_port

#: where Debian's package and RabbitMQ's generic unix tarball put the start script
CANDIDATES = (
    "/usr/lib/rabbitmq/bin/rabbitmq-server",
    "/usr/local/lib/rabbitmq/bin/rabbitmq-server",
    "/opt/rabbitmq/sbin/rabbitmq-server",
)


def server_binary() -> str | None:
    """The `rabbitmq-server` start script (not the root-only wrapper in /usr/sbin), or None."""
    for candidate in CANDIDATES:
        if os.access(candidate, os.X_OK) and shutil.which("erl"):
            return candidate
    return None


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether an AMQP broker accepts a connection (and login) at `url`."""
    try:
        with Connection(url, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=0)
            return True
    except Exception:  # refused, reset, auth: all mean "not usable here"
        return False


def purge(url: str, *queues: str) -> None:
    """Empty `queues` where they exist (a test starts from nothing)."""
    with Connection(url) as conn:
        for name in queues:
            with contextlib.suppress(Exception), conn.channel() as channel:
                # (kombu's StdChannel does not declare it; py-amqp's channel has it)
                cast(Any, channel).queue_purge(name)


class LocalRabbitMQ(LocalServer):
    """A RabbitMQ node on 127.0.0.1:port with its state in a temp folder; restartable."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dist_port = free_port()
        self.base = tempfile.mkdtemp(prefix="b24d-rabbitmq-")
        self.node = f"b24d-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        config = Path(self.base) / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (Path(self.base) / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            HOME=self.base,  # a private Erlang cookie
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(Path(self.base) / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(Path(self.base) / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(Path(self.base) / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(Path(self.base) / "mnesia"),
            RABBITMQ_LOG_BASE=str(Path(self.base) / "log"),
            RABBITMQ_PID_FILE=str(Path(self.base) / "rabbitmq.pid"),
            # two cores shared by everyone: two schedulers, no busy-waiting
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none",
        )
        return env

    def start(self, timeout_s: float = 60.0) -> LocalRabbitMQ:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("no rabbitmq-server on this machine")
        log = open(Path(self.base) / "stdout.log", "ab")  # noqa: SIM115 (the node keeps it)
        self.process = subprocess.Popen(
            [binary],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not answers(self.url, 0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"rabbitmq-server did not start; see {self.base}/log")
            time.sleep(0.2)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the node (SIGKILL with kill=True: a crash, not a shutdown)."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # the start script execs the Erlang VM; its session holds nothing else of ours
                os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def remove_files(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
