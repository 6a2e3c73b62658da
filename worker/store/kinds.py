"""What the store's scripts take and answer, as enums shared with Lua (the generated prelude
defines each member as a Lua constant: `RETRY = 'retry'`, `LEASE_BUSY = 'busy'`, ...), so
neither side spells them twice."""

from __future__ import annotations

import enum


class Action(enum.Enum):
    """What `settle.lua` does with a leased group (the retry policy's decision)."""

    DELIVERED = "delivered"  # drop the lease
    RETRY = "retry"  # return the items, try the group again after delay_s
    REFRESH = "refresh"  # single-flight token refresh, then retry at once
    PARK = "park"  # block the whole portal for delay_s (inf: until portal.register)
    PARK_CONNECTOR = "park_connector"  # block the portal's groups of this connector
    DEAD_LETTER = "dead_letter"


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
