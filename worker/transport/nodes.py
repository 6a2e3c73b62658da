"""Worker node names that never collide, and how a probe finds this host's workers.

Celery names a worker `celery@<hostname>` unless told otherwise. Two worker processes on one
host (a process manager running the Procfile's `worker:` line twice), or a worker restarted at
once after a crash, would share that name. With RabbitMQ the second one dies at start: its
remote-control queue (`celery@HOST.celery.pidbox`) is exclusive, and the first one's (or the
dead one's, until the broker notices) still holds it. With Redis both run, but remote control
addressed to the name reaches either one.

So the default name is made unique per process: `celery-<pid>-<6 hex>@<hostname>`. The pid
says which process it is; the random part keeps a restarted process apart from its dead
predecessor even where the pid repeats (a container's main process is often pid 1). A name
given with `-n` is kept as given (the operator chose it, and keeps it unique).

A name that is new at each start is what Flower shows: each restart adds a worker, the old
one goes offline (the Procfile and compose start Flower with `--purge_offline_workers`, so
offline workers leave its list). The liveness probe (`b24-delivery health worker`) finds this
host's workers by the `@<hostname>` part, so the Dockerfile, compose and Kubernetes probes need
no name.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from typing import Any

from celery.apps.worker import Worker as CeleryWorker
from celery.utils.nodenames import nodesplit

#: Celery's name part when none is given
DEFAULT_NAME = "celery"


def unique_name(given: str | None, host: str, pid: int, token: str) -> str:
    """The node name for a worker started with `-n given` (None: no `-n`) on `host`: Celery's
    default made unique with the process id and a random `token`; any other name as given."""
    name, name_host = nodesplit(given or "")
    if name not in (None, DEFAULT_NAME) or (name_host and name_host != host):
        return str(given)
    return f"{DEFAULT_NAME}-{pid}-{token}@{host}"


def host_pattern(host: str, name: str | None = None) -> str:
    """A regular expression (kombu's `pcre` matcher) for the nodes on `host`: all of them, or
    the node `name` there (as given, or as `unique_name` made it from `name`)."""
    if name is None:
        return f"^[^@]+@{re.escape(host)}$"
    return f"^{re.escape(name)}(-[0-9]+-[0-9a-f]{{6}})?@{re.escape(host)}$"


class Worker(CeleryWorker):
    """Celery's worker with a unique default node name (see the module's docstring)."""

    def __init__(self, app: Any = None, hostname: str | None = None, **kwargs: Any) -> None:
        named = unique_name(hostname, socket.gethostname(), os.getpid(), secrets.token_hex(3))
        super().__init__(app=app, hostname=named, **kwargs)
