"""Producers that do not import the worker: b24producer (send_task by name) and a raw
Celery protocol-2 message pushed onto the `celery` list, as a non-Python producer would."""

from __future__ import annotations

import base64
import json
import uuid

import redis

from b24sim import PortalConfig, Simulator
from tests.harness import Fleet, confirmation, delivered_ids, producer, wait_for


def raw_celery_message(task: str, kwargs: dict[str, object]) -> str:
    """The JSON a Celery-protocol client (any language) LPUSHes onto the queue's Redis list."""
    task_id = str(uuid.uuid4())
    body = json.dumps(
        [[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": task,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "timelimit": [None, None],
                "argsrepr": "()",
                "kwargsrepr": "{}",
                "origin": "node-producer@host",
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": "celery"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def test_a_raw_protocol_message_from_another_language_is_delivered(
    fleet: Fleet, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    fleet.start()
    creds = sim.add_portal(PortalConfig(member_id="p1"))
    r.lpush("celery", raw_celery_message("portal.register", dict(creds.as_register_kwargs())))
    r.lpush("celery", raw_celery_message("delivery.confirm", confirmation("p1", 4242)))
    wait_for(lambda: delivered_ids(sim) == [4242], what="the raw message's delivery")


def test_the_python_producer_masks_tokens_in_what_flower_shows(
    redis_url: str, r: redis.Redis
) -> None:
    p = producer(redis_url)
    p.register_portal(
        member_id="m",
        domain="d",
        client_endpoint="https://d/rest/",
        access_token="AT-secret-1",
        refresh_token="RT-secret-1",
        application_token="APP-secret-1",
        expires_in=3600,
    )
    message = json.loads(r.lindex("celery", 0) or b"{}")
    assert "AT-secret-1" not in message["headers"]["kwargsrepr"]
    assert "RT-secret-1" not in message["headers"]["kwargsrepr"]
    assert "APP-secret-1" not in message["headers"]["kwargsrepr"]
    p.close()
