"""The two token tasks: their kwargs, their queues, and masked token arguments."""

from __future__ import annotations

from typing import Any

from worker.portals.ownership import renewed_kwargs, send_renewed, send_token_request
from worker.settings import Settings


class Sent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **options: Any) -> None:
        self.calls.append((name, options))


ANSWER = {
    "access_token": "acc-secret-1",
    "refresh_token": "ref-secret-1",
    "expires_in": 3600,
    "domain": "oauth.bitrix.info",
}


def test_renewed_block_carries_the_portals_domain_not_the_oauth_servers() -> None:
    kwargs = renewed_kwargs(
        "m1", "m1.bitrix24.com", "https://m1/rest/", "https://oauth.bitrix.info/rest/", ANSWER
    )
    assert kwargs == {
        "member_id": "m1",
        "domain": "m1.bitrix24.com",
        "client_endpoint": "https://m1/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "access_token": "acc-secret-1",
        "refresh_token": "ref-secret-1",
        "expires_in": 3600,
    }


def test_tasks_are_off_unless_named_and_masked_when_sent() -> None:
    sent = Sent()
    kwargs = renewed_kwargs("m1", "d", "https://m1/rest/", "", ANSWER)
    assert not send_renewed(sent, Settings(), kwargs)
    assert not send_token_request(sent, Settings(), "m1", 3)
    assert sent.calls == []
    s = Settings(tokens_renewed_task="svc.renewed", token_request_task="svc.request")
    assert send_renewed(sent, s, kwargs) and send_token_request(sent, s, "m1", 3)
    (renewed, r_opts), (request, q_opts) = sent.calls
    assert renewed == "svc.renewed" and r_opts["queue"] == "celery"
    assert r_opts["kwargs"]["access_token"] == "acc-secret-1"
    assert "acc-secret-1" not in r_opts["kwargsrepr"]
    assert "ref-secret-1" not in r_opts["kwargsrepr"]
    assert request == "svc.request" and q_opts["kwargs"] == {"member_id": "m1", "token_version": 3}
