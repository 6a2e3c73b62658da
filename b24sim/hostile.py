"""Hostile portals: an ADVERSARY's behaviours, not platform facts.

No Bitrix24 portal is documented to answer like this. But any installation (a self-hosted one
included) can install a connector's app, so a vendor's fleet calls portals it does not control,
and whoever runs one can make it answer anything. Each kind below is a switch on one simulated
portal (`PortalConfig.hostile`, `Simulator.set_hostile`, `POST /_sim/hostile`), for testing that
what a portal answers cannot hurt the fleet:

- ``gzip_bomb``: HTTP 200, ``Content-Encoding: gzip``, a body of about 128 KiB that unpacks to
  128 MiB (a JSON success padded with spaces: read without a limit it even looks delivered);
- ``drip``: HTTP 200, its head at once, then its body one byte every ``DRIP_INTERVAL_S``
  (0.5 s): every read is quick, the whole answer takes minutes;
- ``deep_json``: HTTP 200, a body of 100,000 ``[`` (past any recursion limit);
- ``bare_number``: HTTP 200, a body that is valid JSON but not an object (``42``);
- ``bad_numbers``: the method runs and the items are accepted, as on a real portal, but the
  success's ``time`` block holds numbers no float holds or no time is (``1e999``, ``NaN``,
  ``-Infinity``, a 400-digit integer, ``operating_reset_at`` of 1e17). Such a portal did take
  the batch: a sender that resends it on the bad numbers sends it again and again.

The first four never run the method: nothing is accepted, the call is still logged.
"""

from __future__ import annotations

import functools
import zlib

from .replies import Reply

KINDS: tuple[str, ...] = ("gzip_bomb", "drip", "deep_json", "bare_number", "bad_numbers")
#: the kinds that answer instead of the method
REPLACING = frozenset(KINDS) - {"bad_numbers"}
#: seconds between two bytes of a dripped body
DRIP_INTERVAL_S = 0.5
BOMB_MIB = 128
DEEP = 100_000

_SUCCESS_HEAD = b'{"result": {"SUCCESS": true, "DATA": []}, "time": {}, "pad": "'
_BAD_TIME = (
    '{"start": 1e999, "finish": -1e999, "duration": NaN, "processing": Infinity, '
    '"operating": ' + "9" * 400 + ", "
    '"operating_reset_at": 1e17, "date_start": 1e999, "date_finish": -Infinity}'
)


def check_kind(kind: str | None) -> str | None:
    if kind in (None, ""):
        return None
    if kind not in KINDS:
        raise ValueError(f"unknown hostile kind {kind!r}; one of {', '.join(KINDS)}")
    if kind == "gzip_bomb":
        gzip_bomb()  # packed once (about a second), before the first call waits for it
    return kind


@functools.cache
def gzip_bomb(mib: int = BOMB_MIB) -> bytes:
    """A gzip body that unpacks to `mib` MiB: a JSON success padded with spaces."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(_SUCCESS_HEAD)]
    block = b" " * (1024 * 1024)
    parts += [packer.compress(block) for _ in range(mib)]
    parts += [packer.compress(b'"}'), packer.flush()]
    return b"".join(parts)


def hostile_reply(kind: str) -> Reply:
    """The answer of a portal of a replacing `kind`."""
    if kind == "gzip_bomb":
        return Reply(200, gzip_bomb(), headers={"Content-Encoding": "gzip"})
    if kind == "drip":
        # a success, would it ever arrive: 5 minutes at the drip's pace
        body = b'{"result": {"SUCCESS": true, "DATA": []}' + b" " * 600 + b"}"
        return Reply(200, body, drip_s=DRIP_INTERVAL_S)
    if kind == "deep_json":
        return Reply(200, b"[" * DEEP)
    if kind == "bare_number":
        return Reply(200, b"42")
    raise ValueError(f"{kind!r} does not replace the answer")


def tamper(reply: Reply) -> Reply:
    """A `bad_numbers` portal's version of a success: the same result, a hostile time block."""
    if reply.status != 200 or reply.error is not None:
        return reply
    body = b'{"result": {"SUCCESS": true, "DATA": []}, "time": ' + _BAD_TIME.encode() + b"}"
    return Reply(200, body, reply.content_type, headers=dict(reply.headers))
