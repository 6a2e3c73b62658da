"""The portals' registrations and tokens: stored (sealed at rest), replaced by
`portal.register`, moved to a new REST address, and refreshed fleet-wide one process at a time
(worker/portals/refresh.py).
"""

from __future__ import annotations

from redis import Redis
from redis.typing import EncodableT

from worker.errors import PortalError
from worker.flush.policy import Outcome
from worker.ingest.validation import Registration
from worker.net.guard import new_session, refusal
from worker.net.trust import Resolver
from worker.ops.parking import PORTAL_FIELDS, connector_fields
from worker.portals.crypto import KeyMissing, cipher
from worker.portals.refresh import Refresh, Refresher
from worker.settings import Settings
from worker.store.clock import server_time
from worker.store.keys import Keys
from worker.store.scripts import PARKED, script
from worker.store.triggers import SendTask

__all__ = ["PortalStore", "Refresh"]  # Refresh: re-exported, callers import it from here


def _nothing(*_: object, **__: object) -> None:
    return None


class PortalStore:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        send_task: SendTask = _nothing,
        resolver: Resolver | None = None,
    ) -> None:
        """`resolver`: how host names are resolved (None: the system's; tests inject theirs)."""
        self.redis = redis
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self._move = script(redis, "move_endpoint")
        #: the rules on where tokens and the app's secret may go (worker/net/trust.py)
        self.trust = settings.trust()
        #: the calls to portals: every request and connection passes the portal policy (no host
        #: trusted, not even the operator's OAuth host)
        self.policy = self.trust.portal_policy(resolver)
        self.session = new_session(self.policy)
        #: tokens are sealed before they are stored and opened after they are read (at rest)
        self.cipher = cipher(settings.token_key_list)
        oauth = new_session(self.trust.oauth_policy(resolver))  # the refresh's only
        self._refresher = Refresher(
            redis, settings, self.cipher, self.open_token, send_task, session=oauth
        )

    def open_token(self, stored: str) -> str:
        """A stored token, decrypted. Raises PortalError (KEY_MISSING) when this worker lacks the
        key it was sealed with: the flush is deferred, and flows once a worker with it takes it."""
        try:
            return self.cipher.open(stored)
        except KeyMissing as exc:
            raise PortalError(Outcome.KEY_MISSING, "TOKEN_KEY_MISSING", str(exc)) from None

    def key_waits(self, member_id: str) -> int:
        """The portal's flushes in a row deferred for a missing token key (their backoff)."""
        return int(self.redis.hget(self.keys.portal(member_id), "key_waits") or 0)

    def register(self, reg: Registration) -> str | None:
        """Store or replace a portal's tokens and lift every parking (new tokens, new chance).

        Returns why the portal is parked at once instead: its `server_endpoint` would receive
        the app's secret and its host is not allowed (nothing is sent to it)."""
        key = self.keys.portal(reg.member_id)
        now = server_time(self.redis)
        refusal = None
        if reg.server_endpoint and not self.s.oauth_url:
            refusal = self.trust.server_endpoint_problem(reg.server_endpoint)
        fields: dict[EncodableT, EncodableT] = {
            "member_id": reg.member_id,
            "domain": reg.domain,
            "client_endpoint": reg.client_endpoint,
            "access_token": self.cipher.seal(reg.access_token),
            "refresh_token": self.cipher.seal(reg.refresh_token),
            "expires_at": int(now) + reg.expires_in,
            "token_owner": reg.token_owner,
            "source": "register",
        }
        for name in ("server_endpoint", "rate_per_s", "rate_burst"):
            if getattr(reg, name) is not None:
                fields[name] = getattr(reg, name)
        lifted = ["throttles", "refused_refreshed", "token_requested", "refresh_lost", "probe"]
        lifted.append("key_waits")  # tokens sealed anew, with this worker's newest key
        lifted += [*PORTAL_FIELDS, *connector_fields(self.redis, self.keys, reg.member_id)]
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(key, *lifted)
        for name in ("server_endpoint", "rate_per_s", "rate_burst"):
            if getattr(reg, name) is None:
                pipe.hdel(key, name)
        pipe.hset(key, mapping=fields)
        pipe.hincrby(key, "version", 1)
        if refusal:
            pipe.hset(
                key,
                mapping={
                    "blocked_until": str(PARKED),
                    "block_reason": "OAUTH_HOST_NOT_ALLOWED",
                    "block_description": refusal,
                    "blocked_at": now,
                },
            )
        pipe.delete(self.keys.refreshing(reg.member_id))
        if reg.packing is not None:
            # an explicit choice: a new chance for a portal that refused packing before
            pipe.hset(key, "packing", reg.packing)
            pipe.hdel(key, "packing_off_at", "packing_off_reason")
        else:
            pipe.hdel(key, "packing")
        pipe.sadd(self.keys.portals, reg.member_id)
        pipe.hincrby(self.keys.stats, "registrations", 1)
        pipe.execute()
        return refusal

    def move(self, member_id: str, old_endpoint: str, new_endpoint: str) -> bool:
        """Store a moved portal's new REST address, only if nobody changed it since.

        The address is judged as a connection to it would be (its host resolved now) BEFORE it
        is stored: a refused one raises PortalError (UNSAFE_REDIRECT) and nothing is stored."""
        why = refusal(self.policy, new_endpoint)
        if why:
            raise PortalError(Outcome.DENIED, "UNSAFE_REDIRECT", f"redirect target {why}"[:300])
        return bool(
            self._move(
                {"portal_key": self.keys.portal(member_id)},
                {"old_endpoint": old_endpoint, "new_endpoint": new_endpoint},
            )["moved"]
        )

    def refresh(self, member_id: str, seen_version: int, *, refused: str = "") -> Refresh:
        """Refresh the portal's tokens unless someone else has or is (worker/portals/refresh.py).
        Raises PortalError."""
        return self._refresher.refresh(member_id, seen_version, refused=refused)
