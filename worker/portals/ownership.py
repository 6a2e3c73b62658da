"""Who refreshes a portal's tokens, and the two tasks that tell the other side.

A refresh token is single-use, and the connector service that produces confirmations usually
holds the same pair for its own calls: exactly one side may refresh. Per portal
(`portal.register`'s `token_owner`):

- `worker` (default): the worker refreshes and, after each refresh, sends
  DELIVERY_TOKENS_RENEWED_TASK (when set) on DELIVERY_TOKENS_RENEWED_QUEUE with the new auth
  block, so the owner can store it;
- `producer`: the worker never spends the refresh token; on an expired token it sends
  DELIVERY_TOKEN_REQUEST_TASK on DELIVERY_TOKEN_REQUEST_QUEUE with the member_id and the token
  version it holds, once per version, and waits, parked, for the `portal.register` that brings
  fresh tokens.

Both tasks are JSON kwargs sent by name; their token arguments are masked in `kwargsrepr`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.ops.redaction import redact
from worker.settings import Settings

WORKER = "worker"
PRODUCER = "producer"


def renewed_kwargs(
    member_id: str,
    domain: str,
    client_endpoint: str,
    server_endpoint: str,
    answer: dict[str, Any],
) -> dict[str, Any]:
    """The auth block after a refresh: the portal's own domain and current endpoints."""
    expires_in = answer.get("expires_in")
    return {
        "member_id": member_id,
        "domain": domain,
        "client_endpoint": client_endpoint,
        "server_endpoint": server_endpoint,
        "access_token": answer["access_token"],
        "refresh_token": answer["refresh_token"],
        "expires_in": expires_in if isinstance(expires_in, int) else 3600,
    }


def send_renewed(send_task: Callable[..., object], s: Settings, kwargs: dict[str, Any]) -> bool:
    """Announce a new pair (False when DELIVERY_TOKENS_RENEWED_TASK is unset)."""
    if not s.tokens_renewed_task:
        return False
    send_task(
        s.tokens_renewed_task,
        kwargs=kwargs,
        kwargsrepr=repr(redact(kwargs)),
        queue=s.tokens_renewed_queue,
    )
    return True


def send_token_request(
    send_task: Callable[..., object], s: Settings, member_id: str, token_version: int
) -> bool:
    """Ask the owner for fresh tokens (False when DELIVERY_TOKEN_REQUEST_TASK is unset)."""
    if not s.token_request_task:
        return False
    kwargs = {"member_id": member_id, "token_version": token_version}
    send_task(
        s.token_request_task, kwargs=kwargs, kwargsrepr=repr(kwargs), queue=s.token_request_queue
    )
    return True
