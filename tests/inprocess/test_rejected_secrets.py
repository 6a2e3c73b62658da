"""A rejected payload is kept for the operator with every secret of the one list masked
(worker/ops/redaction.py), whether it sits in a field or inside text."""

from __future__ import annotations

import json

import pytest

from worker.errors import InvalidInput
from worker.ingest.validation import registration
from worker.ops import records
from worker.runtime import Runtime

SECRET = "S3CRET-value-42"


def test_a_rejected_registration_keeps_no_secret(rt: Runtime) -> None:
    payload = {
        "member_id": "m1",
        "domain": "m1.bitrix24.com",
        "client_endpoint": "https://m1.bitrix24.com/rest/",
        "access_token": SECRET,
        "refresh_token": SECRET,
        "application_token": SECRET,
        "rate_per_s": 1e-300,  # the rule it breaks
        "scope": f"imopenlines AUTH_ID={SECRET}&REFRESH_ID={SECRET}",
    }
    with pytest.raises(InvalidInput):
        records.validated(rt, "portal.register", registration, payload)
    [kept] = records.rejected(rt)
    assert kept["field"] == "rate_per_s"
    assert SECRET not in json.dumps(kept)
    shown = json.loads(kept["payload"])
    assert shown["application_token"] == "***" and shown["member_id"] == "m1"
