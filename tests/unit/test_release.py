"""Release identity and the deployment files that must follow the code: one version (pyproject),
printed by `b24-delivery --version` and named by every image reference; compose passes every
setting (BITRIX24_OAUTH_URL only when the operator set it); the worker's stop grace outlasts the
task hard limit the settings compute."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.harness import ROOT
from worker.release import version
from worker.settings import ENV_NAMES, Settings

COMPOSE = ROOT / "docker-compose.yml"
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
#: settings only the worker gets (credentials, and the OAuth override only it uses)
WORKER_ONLY = {
    "BITRIX24_CLIENT_ID",
    "BITRIX24_CLIENT_SECRET",
    "BITRIX24_OAUTH_URL",
    "DELIVERY_TOKEN_KEYS",
    "SENTRY_DSN",
}


def _pyproject_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def _manifests() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_installed_version_is_pyprojects() -> None:
    assert version() == _pyproject_version()


def test_version_flag_prints_the_package_version_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"b24-delivery {_pyproject_version()}\n"


def test_every_image_reference_names_the_package_version() -> None:
    tag = f"b24-delivery:{_pyproject_version()}"
    images = [str(_compose()["x-app"]["image"])]
    for doc in _manifests():
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        images += [c["image"] for c in pod.get("containers", [])]
    assert len(images) == 1 + 3, images  # compose, worker, beat, exporter
    assert images == [tag] * len(images)
    assert not any(":latest" in path.read_text() for path in [COMPOSE, *MANIFESTS])


def test_compose_passes_every_setting_to_the_worker() -> None:
    worker = _compose()["services"]["worker"]["environment"]
    missing = [name for name in ENV_NAMES.values() if name not in worker]
    assert not missing, (
        f"docker-compose.yml: add to x-env (or the worker) without a value: {missing}"
    )


def test_compose_passes_optional_settings_only_when_the_operator_set_them() -> None:
    """Written without a value, a variable reaches the container only when it is set in the
    shell or .env; `${NAME:-}` would hand over an empty one always."""
    compose = _compose()
    worker = compose["services"]["worker"]["environment"]
    assert worker["BITRIX24_OAUTH_URL"] is None
    given = {"REDIS_URL", "DELIVERY_LOG_FORMAT", "BITRIX24_CLIENT_ID", "BITRIX24_CLIENT_SECRET"}
    for name in set(ENV_NAMES.values()) - given:
        assert worker[name] is None, f"{name} must be written without a value"
    raw = COMPOSE.read_text(encoding="utf-8")
    assert re.search(r"^ +BITRIX24_OAUTH_URL:$", raw, re.MULTILINE)


def test_compose_keeps_the_workers_secrets_from_the_other_services() -> None:
    services = _compose()["services"]
    for name in ("beat", "flower", "metrics"):
        leaked = (WORKER_ONLY - {"SENTRY_DSN"}) & set(services[name]["environment"])
        assert not leaked, (name, leaked)
    assert "SENTRY_DSN" in services["beat"]["environment"]  # beat reports errors too
    assert set(ENV_NAMES.values()) - WORKER_ONLY <= set(services["beat"]["environment"])


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match.group(1))


def test_the_stop_grace_outlasts_the_task_hard_limit_with_margin() -> None:
    hard_limit = Settings().task_time_limit_s
    compose_grace = _seconds(str(_compose()["services"]["worker"]["stop_grace_period"]))
    (worker,) = [d for d in _manifests() if d["metadata"]["name"] == "b24-delivery-worker"]
    k8s_grace = float(worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    for grace in (compose_grace, k8s_grace):
        assert grace >= hard_limit + 30, (grace, hard_limit)
    # the operations docs quote the manifests' values
    docs = ROOT / "docs/operations"
    for page in ("deployment.md", "probes.md"):
        assert f"terminationGracePeriodSeconds: {k8s_grace:g}`" in (docs / page).read_text(), page
    assert f"stop_grace_period: {compose_grace:g}s`" in (docs / "deployment.md").read_text()
    # the comments cite the computation, not a literal that goes stale
    for text in (COMPOSE.read_text(), (ROOT / "deploy/kubernetes/worker.yaml").read_text()):
        assert "task_time_limit_s" in text


def test_the_exporter_port_is_the_same_everywhere() -> None:
    from worker.ops.exporter import DEFAULT_PORT

    assert DEFAULT_PORT == 9818
    places = [COMPOSE, ROOT / "Procfile", ROOT / "deploy/kubernetes/exporter.yaml"]
    for path in places:
        text = path.read_text()
        assert "9818" in text and "9808" not in text, path


def test_the_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(_pyproject_version())}\b", changelog, re.MULTILINE)


def test_paths_named_here_exist() -> None:
    assert all(isinstance(p, Path) and p.is_file() for p in [COMPOSE, *MANIFESTS])
