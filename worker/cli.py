"""The operator's view, at a glance: `python -m worker.cli COMMAND`.

    stats                     fleet-wide counters, pending confirmations, dead letters
    portals                   registered portals: endpoint, token version, parking (no tokens)
    rejected [--limit N]      the newest rejected payloads, with field and rule
    dead list [--portal P]    dead letters: group, message, code, attempts, times
    dead replay [--portal P] [--id ID ...]   back into their groups, fresh attempts
    dead purge  [--portal P] [--id ID ...]   drop them

Output is JSON lines, so it pipes into jq. Tokens never appear.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.keys import text
from worker.runtime import Runtime

_PORTAL_FIELDS = (
    "member_id",
    "domain",
    "client_endpoint",
    "version",
    "source",
    "expires_at",
    "blocked_until",
    "block_reason",
    "rate_per_s",
    "rate_burst",
    "throttles",
)


def _print(record: Any) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _stats(rt: Runtime) -> dict[str, Any]:
    raw = {text(k): text(v) for k, v in rt.redis.hgetall(rt.buffer.keys.stats).items()}
    counters = {k: v for k, v in sorted(raw.items()) if "_bucket:" not in k}
    counters["dead_letters_kept"] = str(rt.redis.zcard(rt.buffer.keys.dead))
    counters["groups_due"] = str(rt.redis.zcard(rt.buffer.keys.due))
    return counters


def _portals(rt: Runtime) -> list[dict[str, str]]:
    out = []
    for member in sorted(text(m) for m in rt.redis.smembers(rt.buffer.keys.portals)):
        values = rt.redis.hmget(rt.buffer.keys.portal(member), list(_PORTAL_FIELDS))
        out.append({k: text(v) for k, v in zip(_PORTAL_FIELDS, values, strict=True) if v})
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m worker.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("stats")
    sub.add_parser("portals")
    rejected = sub.add_parser("rejected")
    rejected.add_argument("--limit", type=int, default=20)
    dead = sub.add_parser("dead")
    dead.add_argument("action", choices=("list", "replay", "purge"))
    dead.add_argument("--portal")
    dead.add_argument("--id", action="append", dest="ids")
    dead.add_argument("--limit", type=int, default=100)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from worker import app, get_settings, records, runtime

    rt = runtime.get(get_settings(), app.send_task)
    if args.command == "stats":
        _print(_stats(rt))
    elif args.command == "portals":
        for portal in _portals(rt):
            _print(portal)
    elif args.command == "rejected":
        for record in records.rejected(rt, args.limit):
            _print(record)
    elif args.action == "list":
        for record in records.dead_letters(rt, args.limit, portal=args.portal):
            _print(record)
    elif args.action == "replay":
        _print({"replayed": records.replay(rt, ids=args.ids, portal=args.portal)})
    else:
        _print({"purged": records.purge(rt, ids=args.ids, portal=args.portal)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
