"""Worker processes from the same Procfile line never collide, on either broker: two started
together, and one restarted at once after a kill -9, each start and stay up, with node names of
their own, and `health worker` without `--node` finds them all (the container probes pass no
name). Real worker processes, as a process manager would run them."""

from __future__ import annotations

import re
import shlex
import socket
import sys
from pathlib import Path

import pytest

from devtools.procs import start_logged
from tests.harness import ROOT, Fleet, WorkerProcess, wait_for
from tests.ops.conftest import cli
from worker.transport.nodes import host_pattern, unique_name

READY = re.compile(r"([\w.-]+@[\w.-]+) ready\.")


def procfile_worker_line() -> list[str]:
    """The Procfile's `worker:` command, run with this interpreter."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("worker:"))
    args = shlex.split(line.removeprefix("worker:"))
    assert args[0] == "celery", line
    return [sys.executable, "-m", "celery", *args[1:]]


def start_from_procfile(fleet: Fleet, tmp: Path, n: int, **env: str) -> WorkerProcess:
    log = tmp / f"procfile-worker-{n}.log"
    args = [*procfile_worker_line(), "-c", "1"]  # one pool process each: a loaded machine
    process = start_logged(args, log, fleet.environment(**env), new_session=False)
    worker = WorkerProcess(process, log, f"procfile-{n}")
    fleet.workers.append(worker)
    return worker


def ready_name(worker: WorkerProcess) -> str:
    """The node name the worker announced, once it is ready (fails if it exited)."""
    wait_for(
        lambda: READY.search(worker.log()) or worker.process.poll() is not None,
        60,
        what=f"{worker.name} to start",
    )
    assert worker.process.poll() is None, f"{worker.name} exited:\n{worker.log()[-3000:]}"
    found = READY.search(worker.log())
    assert found
    return found.group(1)


def answered(fleet: Fleet, env: dict[str, str], count: int) -> str:
    """`health worker`'s line once `count` workers of this host answered it, else ''."""
    line = cli(fleet, "health", "worker", "--timeout-s", "3", **env)[1]
    return line if f"ok: {count} answered" in line else ""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_workers_from_one_procfile_line_start_and_stay_up(
    broker: str, fleet: Fleet, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {"CELERY_BROKER_URL": request.getfixturevalue("amqp_url")} if broker == "rabbitmq" else {}
    host = socket.gethostname()
    first, second = (start_from_procfile(fleet, tmp_path, n, **env) for n in (1, 2))
    names = {ready_name(first), ready_name(second)}
    assert len(names) == 2, names
    assert all(re.fullmatch(host_pattern(host, "celery"), name) for name in names), names
    wait_for(lambda: answered(fleet, env, 2), 60, "both workers to answer", interval_s=0.5)

    first.kill()  # a crash; the process manager starts the same line again at once
    third = start_from_procfile(fleet, tmp_path, 3, **env)
    restarted = ready_name(third)
    assert restarted not in names
    line = wait_for(
        lambda: answered(fleet, env, 2), 60, "the restarted one and the other", interval_s=0.5
    )
    assert restarted in line and all(w.process.poll() is None for w in (second, third)), line
    for worker in (second, third):
        assert "ResourceLocked" not in worker.log() and "Unrecoverable" not in worker.log()
    print(f"\n[{broker}] Procfile line x2 + restart after kill -9: {line}")


def test_default_names_are_unique_and_given_names_are_kept() -> None:
    made = unique_name("celery@h1", "h1", 4321, "0a1b2c")
    assert made == "celery-4321-0a1b2c@h1"
    assert unique_name(None, "h1", 1, "ffffff") == "celery-1-ffffff@h1"
    assert unique_name("flusher@h1", "h1", 1, "ffffff") == "flusher@h1", "an operator's name"
    assert unique_name("celery@other", "h1", 1, "ffffff") == "celery@other"
    assert re.fullmatch(host_pattern("h1"), made)
    assert re.fullmatch(host_pattern("h1", "celery"), made)
    assert re.fullmatch(host_pattern("h1", "w1"), "w1@h1")
    assert not re.fullmatch(host_pattern("h1"), "celery-1-ffffff@h10")
    assert not re.fullmatch(host_pattern("h1", "w1"), "w10@h1")
    assert not re.fullmatch(host_pattern("h.1"), "x@hx1"), "the host is matched literally"
