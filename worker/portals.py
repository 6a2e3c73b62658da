"""The portals' registrations and tokens, and the fleet-wide single-flight refresh.

A refresh token is single-use, so exactly one process refreshes a portal at a time: a Redis lock
with expiry, a check that nobody refreshed the version we saw, the OAuth call, and the new pair
stored by one script that also releases the lock. Everyone else just retries with whatever token
version Redis holds by then.
"""

from __future__ import annotations

import enum
import uuid

from redis import Redis
from redis.typing import EncodableT

from worker.bitrix import Timeouts, refresh_tokens
from worker.clock import server_time
from worker.endpoints import DEFAULT_OAUTH_URL
from worker.errors import PortalError
from worker.keys import Keys, text
from worker.policy import Outcome
from worker.scripts import script
from worker.settings import Settings
from worker.validation import Registration


class Refresh(enum.Enum):
    REFRESHED = "refreshed"  # we refreshed: retry now
    ALREADY = "already"  # someone else did: retry now
    IN_PROGRESS = "in_progress"  # someone else is: retry shortly


class PortalStore:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self._store = script(redis, "store_tokens")
        self._release = script(redis, "release_lock")

    def register(self, reg: Registration) -> None:
        """Store or replace a portal's tokens and lift any parking (new tokens, new chance)."""
        key = self.keys.portal(reg.member_id)
        now = server_time(self.redis)
        fields: dict[EncodableT, EncodableT] = {
            "member_id": reg.member_id,
            "domain": reg.domain,
            "client_endpoint": reg.client_endpoint,
            "access_token": reg.access_token,
            "refresh_token": reg.refresh_token,
            "expires_at": int(now) + reg.expires_in,
            "source": "register",
        }
        if reg.rate_per_s is not None:
            fields["rate_per_s"] = reg.rate_per_s
        if reg.rate_burst is not None:
            fields["rate_burst"] = reg.rate_burst
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.hincrby(key, "version", 1)
        pipe.hdel(key, "blocked_until", "block_reason", "throttles", "refused_refreshed")
        if reg.rate_per_s is None:
            pipe.hdel(key, "rate_per_s")
        if reg.rate_burst is None:
            pipe.hdel(key, "rate_burst")
        pipe.sadd(self.keys.portals, reg.member_id)
        pipe.hincrby(self.keys.stats, "registrations", 1)
        pipe.execute()

    def refresh(self, member_id: str, seen_version: int, *, refused: bool = False) -> Refresh:
        """Refresh the portal's tokens unless someone else has or is. Raises PortalError.

        `refused`: the token was answered NO_AUTH_FOUND (not expired_token). One refresh is
        tried; when the token that refresh produced is refused too, the app has lost access
        and the AUTH_BROKEN outcome parks the portal.
        """
        lock_key = self.keys.refresh_lock(member_id)
        lock = str(uuid.uuid4())
        if not self.redis.set(lock_key, lock, nx=True, px=int(self.s.refresh_lock_ttl_s * 1000)):
            return Refresh.IN_PROGRESS
        try:
            version, refresh_token, refused_refreshed = self.redis.hmget(
                self.keys.portal(member_id), ["version", "refresh_token", "refused_refreshed"]
            )
            if version is None or refresh_token is None:
                raise PortalError(
                    Outcome.AUTH_BROKEN, "PORTAL_NOT_REGISTERED", "no tokens stored for this portal"
                )
            if int(version) != seen_version:
                return Refresh.ALREADY
            if refused and refused_refreshed is not None and int(refused_refreshed) == seen_version:
                raise PortalError(
                    Outcome.AUTH_BROKEN,
                    "NO_AUTH_FOUND",
                    "a token fresh from a refresh was refused too",
                )
            if not self.s.client_id or not self.s.client_secret:
                raise PortalError(
                    Outcome.AUTH_BROKEN,
                    "NO_CREDENTIALS",
                    "BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET must be set to refresh tokens",
                )
            answer = refresh_tokens(
                self.s.oauth_url or DEFAULT_OAUTH_URL,
                self.s.client_id,
                self.s.client_secret,
                text(refresh_token),
                Timeouts(self.s.http_connect_timeout_s, self.s.http_read_timeout_s),
            )
            expires_in = answer.get("expires_in", 3600)
            expires_at = int(server_time(self.redis)) + (
                expires_in if isinstance(expires_in, int) else 3600
            )
            stored = self._store(
                {"portal_key": self.keys.portal(member_id), "lock_key": lock_key},
                {
                    "lock_id": lock,
                    "seen_version": version,
                    "access_token": answer["access_token"],
                    "refresh_token": answer["refresh_token"],
                    "expires_at": expires_at,
                    "refused": int(refused),
                },
            )["stored"]
            self.redis.hincrby(self.keys.stats, "token_refreshes", 1)
            return Refresh.REFRESHED if stored else Refresh.ALREADY
        except PortalError:
            self.redis.hincrby(self.keys.stats, "token_refresh_failures", 1)
            raise
        finally:
            self._release({"lock_key": lock_key}, {"lock_id": lock})
