"""The simulator's state as JSON-ready data (``GET /_sim/state``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import SimCore


def snapshot(sim: SimCore, records: bool = True) -> dict[str, Any]:
    with sim._lock:
        portals = {}
        for mid, p in sim._portals.items():
            ops = {}
            for name, m in p.meters.items():
                blocked, total, reset_at = m.check()
                ops[name] = {"operating": total, "operating_reset_at": reset_at, "blocked": blocked}
            portals[mid] = {
                "config": p.config.to_dict(),
                "client_endpoint": p.client_endpoint,
                "moved_from": [
                    f"{base}/{prefix}/rest/"
                    for (base, prefix), (owner, _) in sim._moved.items()
                    if owner == mid
                ],
                "counters": dict(p.counters),
                "call_outcomes": sim.call_outcomes(mid),
                "bucket_level": p.bucket.level,
                "operating": ops,
                "accepted": sum(1 for r in sim._records if r.member_id == mid),
                "credentials": sim._current[mid].to_dict(),
            }
        out: dict[str, Any] = {
            "base_url": sim.base_url,
            "oauth_url": sim.oauth_url,
            "strict": sim.strict,
            "oauth_servers": [s.to_dict() for s in sim.oauth_servers()],
            "refresh_counts": {str(k): v for k, v in sim.refresh_counts().items()},
            "portals": portals,
            "faults": [f.to_dict() for f in sim._faults.list()],
            "accepted_total": len(sim._records),
        }
        if records:
            out["accepted"] = [r.to_dict() for r in sim._records]
            out["calls"] = [c.to_dict() for c in sim.calls()]
            out["refresh_requests"] = [r.to_dict() for r in sim.refresh_requests()]
        return out
