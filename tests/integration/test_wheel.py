"""The built wheel, installed as a user would: `pip install <wheel>` (the producer install),
then `pip install '<wheel>[worker]'`, into a fresh venv, used from a folder outside the source
tree, so nothing can come from the checkout. One confirmation goes through a worker started from
that venv to the simulator, over the suite's Redis.

Bounded: the build needs no index (`--no-build-isolation`, setuptools is pinned in the dev lock);
the installs take the dev venv's pinned versions from pip's cache, or from the index on a fresh
machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import redis

from b24sim import PortalConfig, Simulator
from devtools.procs import stop_process
from tests.harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    FAST_ENV,
    ROOT,
    confirmation,
    delivered_ids,
    stats,
    wait_for,
)
from worker.release import version

pytestmark = pytest.mark.slow

_SKIP_COPY = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "var"
)


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tree (the checkout gets no build/ or egg-info)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP_COPY)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"), "."], src)
    [built] = (base / "dist").glob("b24_delivery-*.whl")
    return built


def test_the_wheel_carries_what_it_loads(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    lua = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "worker" / "store" / "lua").glob("*.lua")
    }
    spec = {p.relative_to(ROOT).as_posix() for p in (ROOT / "b24sim" / "spec").glob("*.json")}
    assert lua and spec and lua | spec <= names
    schemas = {p.relative_to(ROOT).as_posix() for p in (ROOT / "worker" / "schemas").glob("*.json")}
    assert len(schemas) == 7 and schemas <= names, "the payload schemas for the defaults ship"
    assert {"worker/py.typed", "b24sim/py.typed", "b24producer/py.typed"} <= names
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_the_installed_wheel_delivers_a_confirmation_from_outside_the_tree(
    wheel: Path, tmp_path: Path, sim: Simulator, redis_url: str, r: redis.Redis
) -> None:
    home = tmp_path / "elsewhere"
    home.mkdir()
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DELIVERY_", "BITRIX24_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(FAST_ENV, REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    cli = str(bin_dir / "b24-delivery")

    # the producer install: Celery and its transports, and the console script's producer side
    _run([*pip, "install", str(wheel)], home, env=env)
    where = _run([str(bin_dir / "python"), "-c", "import worker; print(worker.__file__)"], home)
    assert where.stdout.startswith(str(env_dir)), "the package comes from the venv"
    _run([cli, "simulator", "--help"], home, env=env)
    # the version comes from the installed wheel's metadata, not from the source tree
    assert _run([cli, "--version"], home, env=env).stdout == f"b24-delivery {version()}\n"
    assert json.loads(_run([cli, "stats"], home, env=env).stdout)["groups_due"] == 0
    for extra_command in (["dead", "list"], ["metrics", "--port", "0"]):
        needs = subprocess.run(
            [cli, *extra_command], cwd=home, env=env, capture_output=True, text=True, check=False
        )
        assert needs.returncode == 2 and "worker extra" in needs.stderr, needs.stderr

    # the worker install, and one confirmation through a worker started from it
    _run([*pip, "install", f"{wheel}[worker]"], home, env=env)
    creds = sim.add_portal(PortalConfig(member_id="p1")).as_register_kwargs()
    worker_env = {
        **env,
        "BITRIX24_CLIENT_ID": CLIENT_ID,
        "BITRIX24_CLIENT_SECRET": CLIENT_SECRET,
        "BITRIX24_OAUTH_URL": sim.oauth_url,
    }
    log = (tmp_path / "worker.log").open("wb")
    celery = [str(bin_dir / "celery"), "-A", "worker", "worker", "-Q", "celery,flush", "-c", "1"]
    process = subprocess.Popen(
        [*celery, "--without-mingle", "--without-gossip", "-l", "info"],
        cwd=home,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _run([cli, "register"], home, env=env, stdin=json.dumps(creds))
        _run([cli, "enqueue"], home, env=env, stdin=json.dumps(confirmation("p1", 1)))
        # (the simulator records the call before the worker settles it: wait for both)
        wait_for(
            lambda: (
                (delivered_ids(sim) == [1] and stats(r).get("delivered") == 1)
                or process.poll() is not None
            ),
            60,
            what="the wheel's worker to deliver and settle",
        )
        assert process.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert stats(r)["delivered"] == 1
    finally:
        stop_process(process, 30, "the wheel's worker")
        log.close()
