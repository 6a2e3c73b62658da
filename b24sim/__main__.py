"""CLI: ``python -m b24sim --portal m1 ...``: prints one JSON line, serves until signalled.

The line holds ``base_url``, ``oauth_url``, ``oauth_servers`` (token URLs by index), each portal's
registration kwargs and ``moved`` (member_id -> new client_endpoint). Everything else is switched
at run time through ``/_sim/`` (POST move_portal, oauth_servers, oauth_delay, refuse_in_batch,
faults; GET state, calls, refresh_requests, observations).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .portal import PortalConfig
from .server import Simulator


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m b24sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--host", default="127.0.0.1", help="listen address, loopback only (default 127.0.0.1)"
    )
    ap.add_argument("--port", type=int, default=0, help="listen port (default 0: a free port)")
    ap.add_argument(
        "--client-id",
        default="app.b24sim",
        help="the OAuth application's client id its servers accept (default app.b24sim)",
    )
    ap.add_argument(
        "--client-secret",
        default="b24sim-secret",
        help="the OAuth application's client secret its servers accept (default b24sim-secret)",
    )
    ap.add_argument("--portal", action="append", default=[], help="member_id (repeatable)")
    ap.add_argument("--rate", type=float, default=None, help="leaky-bucket drain per second")
    ap.add_argument("--burst", type=float, default=None, help="leaky-bucket size")
    ap.add_argument("--enterprise", action="store_true", help="5/s, burst 250 defaults")
    ap.add_argument(
        "--token-ttl",
        type=float,
        default=3600.0,
        metavar="S",
        help="access token lifetime in seconds (default 3600, as Bitrix24's)",
    )
    ap.add_argument("--connector", action="append", default=None, help="known connector(s)")
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the injected faults' random choices (default 0)",
    )
    ap.add_argument(
        "--strict",
        action="store_true",
        help="also check every MESSAGES element against the spec (the portal itself does not)",
    )
    ap.add_argument(
        "--oauth-servers",
        type=int,
        default=0,
        metavar="N",
        help="N extra OAuth servers (regions 1..N), each on its own loopback port",
    )
    ap.add_argument(
        "--oauth-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="every OAuth server answers a refresh S seconds after spending the token",
    )
    ap.add_argument(
        "--portal-oauth-server",
        type=int,
        default=0,
        metavar="I",
        help="the OAuth server (index) that issues the --portal tokens",
    )
    ap.add_argument(
        "--move",
        action="append",
        default=[],
        metavar="PORTAL[:STATUS]",
        help="after start, move the portal (301/302/307/308, default 302): the printed "
        "registration keeps the old address, which redirects to the new one",
    )
    ap.add_argument(
        "--refuse-in-batch",
        default=None,
        metavar="CODE",
        help="the portals' batch refuses imconnector commands with CODE "
        "(ERROR_BATCH_METHOD_NOT_ALLOWED or WRONG_AUTH_TYPE)",
    )
    ap.add_argument(
        "--state-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the printed state line (URLs, registrations) to PATH",
    )
    ap.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    return ap


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve the portals `args` (from build_parser) describe until SIGINT/SIGTERM."""
    if not args.allow_remote and not _is_loopback(args.host):
        print(f"refusing non-loopback host {args.host!r} without --allow-remote", file=sys.stderr)
        return 2
    configs = [
        PortalConfig(
            member_id=m,
            rate_per_s=args.rate,
            burst=args.burst,
            enterprise=args.enterprise,
            token_ttl_s=args.token_ttl,
            connectors=args.connector,
            oauth_server=args.portal_oauth_server,
            batch_refuse=args.refuse_in_batch,
        )
        for m in args.portal
    ]
    sim = Simulator(
        args.client_id,
        args.client_secret,
        args.host,
        args.port,
        seed=args.seed,
        oauth_servers=args.oauth_servers,
        strict=args.strict,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sim.start()
    try:
        for srv in sim.oauth_servers():
            sim.set_oauth_delay(args.oauth_delay, srv.index)
        portals = {c.member_id: sim.add_portal(c).as_register_kwargs() for c in configs}
        moved = {}
        for spec in args.move:
            name, _, status = spec.partition(":")
            moved[name] = sim.move_portal(name, int(status or 302))
        line = json.dumps(
            {
                "base_url": sim.base_url,
                "oauth_url": sim.oauth_url,
                "oauth_servers": [s.token_url for s in sim.oauth_servers()],
                "portals": portals,
                "moved": moved,
            }
        )
        if args.state_file is not None:
            args.state_file.write_text(line + "\n", encoding="utf-8")
        print(line, flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
