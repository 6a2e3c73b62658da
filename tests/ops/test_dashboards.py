"""The shipped alert rules and Grafana dashboard only name metrics the exporter really serves,
and promtool accepts the rules and their unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from b24sim import PortalConfig, Simulator
from tests.harness import ROOT, Fleet, confirmation, delivered_ids, producer, wait_for
from tests.ops.conftest import exporter, get

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
#: PromQL words that are not metric names
_PROMQL = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "le", "sum", "min", "max", "avg", "count", "topk",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels, keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # groupings
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", expr):
        name, call = match.groups()
        if not call and name not in _PROMQL:
            names.add(name)
    return names


def rule_expressions() -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s+expr: (.+)$", RULES.read_text(), re.M)]


def dashboard_expressions() -> list[str]:
    out: list[str] = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            out += [t["expr"] for t in panel.get("targets", [])]
    return out


def served(exposition: str) -> set[str]:
    """Every sample name the exposition has or its families define (a counter family without
    samples yet still serves `<name>_total`, a histogram its `_bucket`, `_sum`, `_count`)."""
    names = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line}
    names = {n for n in names if not n.startswith("#")}
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        name, kind = match.groups()
        base = name.removesuffix("_total") if kind == "counter" else name
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count", ""],
        }.get(kind, [""])
        names.update(base + s for s in suffixes)
    return names


def test_metric_names_are_parsed_from_promql() -> None:
    expr = 'sum by (code) (rate(b24d_api_errors_total{code=~"A|B"}[5m])) > 0.05 or absent(x_y)'
    assert metric_names(expr) == {"b24d_api_errors_total", "x_y"}
    assert metric_names("histogram_quantile(0.5, sum by (le) (rate(h_bucket[5m])))") == {"h_bucket"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool not found: install Debian's `prometheus` package (make test tries)")
    return found


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alerts_fire_on_their_series_and_stay_quiet_on_a_healthy_fleet() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_in_the_dashboard_and_the_alerts_is_served(
    fleet: Fleet, sim: Simulator, r: redis.Redis, tmp_path: Path
) -> None:
    """A fleet delivers one confirmation (so the sweep ran and a portal has tokens), then the
    real exporter is scraped: each name in a query must be one of its families."""
    assert DASHBOARDS, "a dashboard ships in deploy/grafana"
    p = producer(fleet.redis_url)
    try:
        p.register_portal(**sim.add_portal(PortalConfig(member_id="dash")).as_register_kwargs())
        fleet.start(concurrency=1, beat=True)
        p.confirm(**confirmation("dash", 1))
        wait_for(lambda: delivered_ids(sim) == [1], 30, what="the delivery")
        wait_for(lambda: r.exists("b24d:sweep:last_run"), 20, what="the sweep")
    finally:
        p.close()
    with exporter(fleet, tmp_path) as base:
        status, body = get(f"{base}/metrics")
    assert status == 200
    names = served(body)
    wanted = {"rules": set(), "dashboard": set()}
    for expr in rule_expressions():
        wanted["rules"] |= metric_names(expr)
    for expr in dashboard_expressions():
        wanted["dashboard"] |= metric_names(expr)
    print(
        f"\n[dashboards] exporter serves {len(names)} names; "
        + ", ".join(f"{k} use {len(v)}" for k, v in wanted.items())
    )
    for where, used in wanted.items():
        assert used, f"no metric found in the {where}"
        assert used <= names, f"the {where} name metrics nobody serves: {sorted(used - names)}"
