"""`portal.register` (public): store or replace a portal's OAuth tokens, resume its groups."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog

from tasks.delivery import requeued_if_redis_is_unreachable, runtime
from worker import app
from worker.errors import InvalidInput
from worker.ingest.validation import registration
from worker.names import REGISTER_TASK
from worker.ops.records import validated

log = structlog.stdlib.get_logger("tasks.portal")


@app.task(name=REGISTER_TASK, throws=(InvalidInput,))
def register(**payload: Any) -> str:
    with requeued_if_redis_is_unreachable():
        rt = runtime()
        check = partial(registration, networks=rt.settings.endpoint_networks)
        reg = validated(rt, REGISTER_TASK, check, payload)
        refused = rt.portals.register(reg)
        if refused:
            log.error(
                "portal parked: its OAuth server may not receive the client secret",
                portal=reg.member_id,
                code="OAUTH_HOST_NOT_ALLOWED",
                description=refused,
                alert=True,
            )
            return "parked"
        resumed = rt.buffer.resume_portal(reg.member_id)
    log.info("portal registered", portal=reg.member_id, domain=reg.domain, groups_resumed=resumed)
    return "registered"
