"""The worker process: the pool's memory backstop, the kombu it runs on."""

from __future__ import annotations

import os
import re
import textwrap
import tomllib

import pytest

from tests.harness import ROOT, run_python
from worker.errors import SettingsError
from worker.settings import Settings
from worker.transport.celery_app import create_app
from worker.transport.kombu_redis import TESTED_KOMBU, untested_kombu


def test_the_pool_has_a_memory_backstop_by_default() -> None:
    s = Settings.from_env({})
    assert s.worker_max_memory_mib == 256
    app = create_app(s)
    assert app.conf.worker_max_memory_per_child == 256 * 1024, "Celery counts KiB"


def test_the_memory_backstop_can_be_turned_off() -> None:
    app = create_app(Settings.from_env({"DELIVERY_WORKER_MAX_MEMORY_MIB": "0"}))
    assert app.conf.worker_max_memory_per_child is None


@pytest.mark.parametrize("raw", ["1", "63", "65537", "-1", "lots"])
def test_a_memory_limit_below_a_process_footprint_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="DELIVERY_WORKER_MAX_MEMORY_MIB") as info:
        Settings.from_env({"DELIVERY_WORKER_MAX_MEMORY_MIB": raw})
    assert "0 (off), or from 64 to 65536" in str(info.value)


# -- the kombu the patched transport was tested with --


@pytest.mark.parametrize("found", ["5.7.0", "5.7.1", "5.7.12", "5.7.0rc1", " 5.7.2 "])
def test_a_patch_release_of_the_tested_kombu_passes(found: str) -> None:
    assert untested_kombu(found, "5.7") is None


@pytest.mark.parametrize("found", ["5.6.2", "5.8.0", "6.0.0", "5.70.1", "4.7.0", "5", "", "x"])
def test_another_kombu_is_refused_naming_both_versions(found: str) -> None:
    reason = untested_kombu(found, "5.7")
    assert reason is not None
    assert f"kombu {found} is installed" in reason and "kombu 5.7.x" in reason
    assert "'kombu>=5.7,<5.8'" in reason


def test_the_pin_agrees_with_the_worker_extra_and_the_lock() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    worker_extra = pyproject["project"]["optional-dependencies"]["worker"]
    assert f"kombu>={TESTED_KOMBU},<5.8" in worker_extra
    for lock in ("requirements.lock", "requirements-dev.lock"):
        pinned = re.search(r"^kombu==(\S+)", (ROOT / lock).read_text(), re.MULTILINE)
        assert pinned and untested_kombu(pinned.group(1)) is None, lock


def test_a_worker_on_an_untested_kombu_refuses_to_start(redis_url: str) -> None:
    """The check runs at worker start; a faked kombu version in the worker's process."""
    code = textwrap.dedent(
        """
        import importlib.metadata, sys
        real = importlib.metadata.version
        importlib.metadata.version = lambda name: "5.9.0" if name == "kombu" else real(name)
        from celery.__main__ import main
        sys.argv = ["celery", "-A", "worker", "worker", "--pool", "solo", "-l", "INFO"]
        main()
        """
    )
    done = run_python("-c", code, env={**os.environ, "REDIS_URL": redis_url}, timeout_s=60)
    assert done.returncode != 0
    assert "refusing to start: kombu 5.9.0 is installed" in done.stderr + done.stdout
    assert "tested with kombu 5.7.x only" in done.stderr + done.stdout
