"""The `b24-delivery` console script (run as `python -m worker.cli`): every subcommand's help,
one-line errors with exit 2 for a user's mistakes, what enqueue/register put on Celery's queue,
and parked/unpark against a real worker and the simulator."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest
import redis

from b24sim import Fault, PortalConfig, Simulator
from devtools.redis_local import free_port
from tests.harness import (
    Fleet,
    confirmation,
    delivered_ids,
    producer,
    run_cli,
    run_python,
    wait_for,
)
from worker.cli import parser
from worker.store.keys import Keys

SUBCOMMANDS = sorted(
    name
    for action in parser()._subparsers._group_actions  # type: ignore[union-attr]
    for name in getattr(action, "choices", {})
)


def run(redis_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(redis_url, *args, stdin=stdin or "")


def lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def queued(r: redis.Redis, queue: str = "celery") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(headers, kwargs) of each message kombu's Redis transport holds in `queue`."""
    out = []
    for raw in reversed(r.lrange(queue, 0, -1)):
        message = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"], kwargs))
    return out


def test_the_subcommands_are_the_contracts() -> None:
    expected = {"stats", "portals", "parked", "unpark", "dead", "rejected", "enqueue"}
    expected |= {"register", "simulator", "metrics", "rotate-keys"}
    assert expected <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    done = run("redis://127.0.0.1:1/0", command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"usage: b24-delivery {command}" in done.stdout


def test_python_m_worker_metrics_still_runs() -> None:
    done = run_python("-m", "worker.ops.exporter", "--help")
    assert done.returncode == 0 and "--port" in done.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("enqueue",), "{not json", "enqueue: stdin is not valid JSON"),
        (("enqueue",), "[1]", "enqueue: stdin must hold a JSON object, not list"),
        (("enqueue",), '{"portal": "p1"}', "invalid input: connector is required"),
        (("enqueue", "--portal", "p1"), None, "enqueue: missing --connector, --line"),
        (
            ("enqueue",),
            json.dumps({**confirmation("p1", 1), "line": 0}),
            "invalid input: line must be a positive integer",
        ),
        (("register",), '{"member_id": "m1"}', "invalid input: domain is required"),
        (("unpark", "nobody"), None, "unknown portal 'nobody'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    r: redis.Redis, redis_url: str, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    done = run(redis_url, *args, stdin=stdin)
    assert done.returncode == 2
    assert done.stderr.startswith(f"b24-delivery: {message}"), done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert queued(r) == [], "nothing is sent"


def test_rotate_keys_without_keys_is_one_line_and_exit_2(r: redis.Redis, redis_url: str) -> None:
    done = run(redis_url, "rotate-keys")
    assert done.returncode == 2
    assert "DELIVERY_TOKEN_KEYS must be set" in done.stderr and "Traceback" not in done.stderr


def test_tokens_are_never_taken_from_flags(redis_url: str) -> None:
    done = run(redis_url, "register", "--access-token", "secret")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


@pytest.mark.parametrize("command", [("stats",), ("parked",), ("enqueue",)])
def test_an_unreachable_redis_is_one_line_and_exit_2(command: tuple[str, ...]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = run(url, *command, stdin=json.dumps(confirmation("p1", 1)))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("b24-delivery: cannot reach Redis:"), done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_enqueue_sends_delivery_confirm_from_flags_or_stdin(r: redis.Redis, redis_url: str) -> None:
    flags = ["--portal", "p1", "--connector", "myconnector", "--line", "107"]
    flags += ["--chat-id", "323", "--message-id", "1", "--external-id", "ext-1"]
    flags += ["--date", "1738065600", "--chat", "channel-123"]
    [sent] = lines(run(redis_url, "enqueue", *flags))
    [piped] = lines(run(redis_url, "enqueue", stdin=json.dumps(confirmation("p1", 2))))
    assert sent["task"] == piped["task"] == "delivery.confirm"
    assert [(h["task"], h["id"], kw) for h, kw in queued(r)] == [
        ("delivery.confirm", sent["id"], confirmation("p1", 1)),
        ("delivery.confirm", piped["id"], confirmation("p1", 2)),
    ]


def test_enqueue_to_an_unregistered_portal_warns_that_it_will_wait(
    r: redis.Redis, redis_url: str
) -> None:
    done = run(redis_url, "enqueue", stdin=json.dumps(confirmation("p1", 1)))
    [sent] = lines(done)  # exit 0: accepted, it waits for the portal's registration
    assert [h["id"] for h, _ in queued(r)] == [sent["id"]]
    assert done.stderr.startswith("b24-delivery: warning: portal 'p1' is not registered")
    assert "portal.register" in done.stderr and len(done.stderr.splitlines()) == 1

    r.sadd(Keys().portals, "p1")
    done = run(redis_url, "enqueue", stdin=json.dumps(confirmation("p1", 2)))
    assert lines(done) and done.stderr == "", "no warning for a registered portal"


def test_register_sends_portal_register_with_masked_tokens(r: redis.Redis, redis_url: str) -> None:
    auth = {
        "member_id": "m1",
        "domain": "example.bitrix24.com",
        "client_endpoint": "https://example.bitrix24.com/rest/",
        "access_token": "access-secret-1",
        "refresh_token": "refresh-secret-1",
        "expires_in": 3600,
    }
    [sent] = lines(run(redis_url, "register", stdin=json.dumps(auth)))
    [(headers, kwargs)] = queued(r)
    assert headers["task"] == "portal.register" and headers["id"] == sent["id"]
    assert kwargs == auth
    assert "access-secret-1" not in headers["kwargsrepr"]
    assert "refresh-secret-1" not in json.dumps(sent)


def test_parked_lists_a_parked_portal_and_unpark_delivers_its_groups_now(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start(DELIVERY_OVERLOAD_PARK_S="3600")
    p = producer(redis_url)
    p.register_portal(**sim.add_portal(PortalConfig(member_id="p1")).as_register_kwargs())
    sim.inject(Fault(kind="overload", portal="p1"))
    p.confirm(**confirmation("p1", 1))
    wait_for(lambda: lines(run(redis_url, "parked")) != [], what="p1 parked")
    [parked] = lines(run(redis_url, "parked"))
    assert parked["member_id"] == "p1" and parked["block_reason"] == "OVERLOAD_LIMIT"

    sim.clear_faults("p1")
    [done] = lines(run(redis_url, "unpark", "p1"))
    assert done == {"portal": "p1", "cleared": True, "groups_due": 1}
    wait_for(lambda: delivered_ids(sim, "p1") == [1], what="delivery after unpark")
    assert lines(run(redis_url, "parked")) == []
    assert sim.counters("p1")["calls"] == 2, "called once parked, once after unpark"
