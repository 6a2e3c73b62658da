"""The PHP and Node.js producer examples (examples/php, examples/node), run for real: each sends
`portal.register` and `delivery.confirm` through a real broker to a real worker, and the
simulator receives the confirmations. The runtimes are installed here where this machine allows
it (apt-get as root for PHP, `npm ci` for celery-node); a test skips with a printed reason where
they cannot be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from b24sim import PortalConfig, Simulator
from tests.harness import ROOT, Fleet, confirmation, delivered_ids, wait_for

PHP_DIR = ROOT / "examples" / "php"
NODE_DIR = ROOT / "examples" / "node"
PHP_PACKAGES = ("php-cli", "php-predis", "php-amqplib")
#: a bound on each installation step, so a slow mirror cannot hold the suite
INSTALL_TIMEOUT_S = 300


def _skip(reason: str) -> None:
    print(f"\n[producers] skipped: {reason}")
    pytest.skip(reason)


def _run(
    args: list[str],
    timeout_s: float = INSTALL_TIMEOUT_S,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> bool:
    try:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _php_ready() -> bool:
    code = "require 'Predis/autoload.php'; require 'PhpAmqpLib/autoload.php';"
    return shutil.which("php") is not None and _run(["php", "-r", code], timeout_s=30)


@pytest.fixture(scope="session")
def php() -> str:
    """`php` with Debian's predis and php-amqplib, installed with apt-get when missing."""
    if not _php_ready():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _skip(f"PHP examples need {' '.join(PHP_PACKAGES)} (apt-get as root installs them)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
        install += ["-o", "DPkg::Lock::Timeout=120", *PHP_PACKAGES]
        if not _run(install, env=env):
            _run(["apt-get", "update", "-qq"], env=env)
            _run(install, env=env)
        if not _php_ready():
            _skip(f"apt-get could not install {' '.join(PHP_PACKAGES)} here")
    return "php"


@pytest.fixture(scope="session")
def node() -> str:
    """`node` with examples/node's pinned celery-node (`npm ci`, cached in node_modules)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _skip("the Node.js example needs node and npm on PATH")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        ci = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        if not _run(ci, cwd=NODE_DIR):
            _skip("npm ci could not install celery-node (no npm registry here?)")
    return "node"


def _broker(name: str, redis_url: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("amqp_url")) if name == "rabbitmq" else redis_url


def _send(
    fleet: Fleet, sim: Simulator, broker_url: str, member: str, command: list[str], cwd: Path
) -> None:
    """A worker on `broker_url`; `command BROKER_URL` sends a registration and three
    confirmations; the portal receives them."""
    env = {"CELERY_BROKER_URL": broker_url} if broker_url.startswith("amqp") else {}
    fleet.start(concurrency=1, beat=True, **env)
    portal = sim.add_portal(PortalConfig(member_id=member))
    payloads = {
        "register": portal.as_register_kwargs(),
        "confirm": [confirmation(member, i, line=7) for i in (1, 2, 3)],
    }
    done = subprocess.run(
        [*command, broker_url],
        cwd=cwd,
        input=json.dumps(payloads),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ids = done.stdout.split()
    assert len(ids) == 4 and len(set(ids)) == 4, done.stdout
    wait_for(
        lambda: sorted(delivered_ids(sim, member)) == [1, 2, 3],
        60,
        what=f"{member}'s confirmations at the portal",
    )
    assert "payload rejected" not in fleet.logs(), "the example's payloads pass validation"
    print(f"\n[producers] {member}: register + 3 confirmations delivered ({command[0]})")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_the_php_example_reaches_the_portal(
    php: str,
    broker: str,
    fleet: Fleet,
    sim: Simulator,
    redis_url: str,
    request: pytest.FixtureRequest,
) -> None:
    url = _broker(broker, redis_url, request)
    _send(fleet, sim, url, f"php-{broker}", [php, "producer.php"], PHP_DIR)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_the_node_example_reaches_the_portal(
    node: str,
    broker: str,
    fleet: Fleet,
    sim: Simulator,
    redis_url: str,
    request: pytest.FixtureRequest,
) -> None:
    url = _broker(broker, redis_url, request)
    _send(fleet, sim, url, f"node-{broker}", [node, "producer.js"], NODE_DIR)
