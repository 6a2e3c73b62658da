"""With DELIVERY_LOG_FORMAT=json a worker's log is JSON from its first line: the lines it writes
before Celery sets up logging (the plaintext-tokens warning of the start-up key check, at
worker_init) included. Before, those came out as console text."""

from __future__ import annotations

import json
from pathlib import Path

from devtools.procs import child_env, start_logged, stop_process, wait_for, worker_args

PLAINTEXT_WARNING = "tokens are stored in plaintext"


def test_a_json_worker_logs_json_from_its_first_line(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    env = child_env(REDIS_URL=redis_url, DELIVERY_LOG_FORMAT="json")
    env.pop("DELIVERY_TOKEN_KEYS", None)
    worker = start_logged(worker_args("jsonlogs@%h", concurrency=1), log, env)
    try:
        wait_for(lambda: " ready." in log.read_text(errors="replace"), 60, "the worker ready")
    finally:
        stop_process(worker, 30, "the JSON-logging worker")  # its stop is not the subject
    lines = log.read_text(errors="replace").splitlines()
    warnings = [line for line in lines if PLAINTEXT_WARNING in line]
    assert warnings, "the worker warns that tokens are stored in plaintext"
    for line in warnings:
        record = json.loads(line)  # a console line ("... [warning  ] tokens ...") fails here
        assert record["level"] == "warning"
    # every log record is JSON; Celery's start-up banner (printed, not logged) is the rest
    records = [line for line in lines if line.startswith("{")]
    assert all(json.loads(line) for line in records)
    assert not [line for line in lines if "[info     ]" in line or "[warning  ]" in line]
