"""Importing the library's modules has no side effects: no environment parsed, no Celery app
built, kombu's transport aliases untouched. `worker.app` is still the Celery app (`-A worker`)."""

from __future__ import annotations

import os
import subprocess
import textwrap

from tests.harness import ROOT, run_python

PROBE = textwrap.dedent(
    """
    import sys
    from kombu.transport import TRANSPORT_ALIASES
    before = dict(TRANSPORT_ALIASES)
    import worker.flush.flow
    import worker.flush.policy
    import worker.ops.records
    import worker.settings
    import worker.store.buffer
    assert dict(TRANSPORT_ALIASES) == before, "kombu's transport aliases were patched"
    assert "worker.transport.celery_app" not in sys.modules, "the Celery app module was imported"
    assert "celery" not in sys.modules, "celery was imported"
    print("clean")
    """
)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return run_python("-c", code, env=environ)


def test_importing_library_modules_reads_no_environment_and_patches_nothing() -> None:
    done = _run(PROBE, REDIS_URL="bogus", DELIVERY_BATCH_SIZE="not a number")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


def test_the_package_exposes_the_celery_app_as_worker_app() -> None:
    code = textwrap.dedent(
        """
        from celery import Celery
        from celery.app.utils import find_app
        from kombu.transport import TRANSPORT_ALIASES
        import worker
        found = find_app("worker")
        assert isinstance(found, Celery) and found is worker.app, found
        assert TRANSPORT_ALIASES["redis"] == "worker.transport.kombu_redis.channel:Transport"
        print(found.main)
        """
    )
    done = _run(code, REDIS_URL="redis://127.0.0.1:1/0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "b24delivery"


def test_invalid_settings_stop_the_app_with_the_variable_named() -> None:
    done = _run("import worker; worker.app", REDIS_URL="bogus")
    assert done.returncode != 0
    assert "REDIS_URL='bogus' is invalid" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_app_gets_the_patched_transport_even_after_an_earlier_connection() -> None:
    code = textwrap.dedent(
        """
        from kombu import Connection
        Connection("redis://127.0.0.1:1/0").transport  # a producer's, before the app exists
        import worker
        from worker.transport.kombu_redis.channel import Transport
        with worker.app.connection_for_write() as connection:
            assert isinstance(connection.transport, Transport), type(connection.transport)
        """
    )
    done = _run(code, REDIS_URL="redis://127.0.0.1:1/0")
    assert done.returncode == 0, done.stderr
