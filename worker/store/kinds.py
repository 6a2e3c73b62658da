"""What the store's scripts answer, as enums shared with Lua (the generated prelude defines each
member as a Lua constant: `LEASE_BUSY = 'busy'`, ...), so neither side spells them twice."""

from __future__ import annotations

import enum


class Begun(enum.StrEnum):
    """How `begin.lua` started a portal's flush."""

    BUSY = "busy"  # every ready group is leased by another flusher
    WAIT = "wait"  # nothing ready yet (window, backoff, parking, calls in flight)
    THROTTLED = "throttled"  # ready, waiting for a slot of the portal's budget (or its share)
    REFRESH_WAIT = "refresh_wait"  # a token refresh is under way: its end wakes the groups
    LEASED = "leased"  # groups leased for one call
    REFRESH = "refresh"  # groups leased to refresh the refused token first, not to call


class Added(enum.StrEnum):
    """What an ingest did with one confirmation."""

    ADDED = "added"
    COALESCED = "coalesced"  # a repeat of a pending im.message_id
    DEDUPLICATED = "deduplicated"  # one the group delivered within DELIVERY_DEDUP_WINDOW_S
