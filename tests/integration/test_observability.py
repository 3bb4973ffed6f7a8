"""Dashboards and alerts, evaluated by a real Prometheus scraping a real worker and lag exporter.

Every panel query and alert expression must parse in Prometheus and name only metrics the
worker or the exporter export; the panels the demo traffic should fill must return data.
A dashboard that silently shows "No data" because of a typo in a metric name fails here.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from guardstream.config.settings import Settings
from guardstream.ops import produce
from guardstream.ops.worker_process import worker_env
from tests import free_port

from .conftest import Worker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
ALERTS = REPO / "prometheus" / "alerts.yml"
PROMETHEUS_YML = REPO / "prometheus" / "prometheus.yml"
DEMO_REQUESTS = 20
FIRST_WAVE = 5

# Panels the demo traffic must fill (dashboard file, panel title). Panels not listed depend
# on traffic the demo does not send (dead letters, budgets, rate limits) and need only parse
# and name exported metrics.
MUST_HAVE_DATA = {
    ("lag.json", "Max time lag"),
    ("lag.json", "Total lag (records)"),
    ("lag.json", "Group members"),
    ("lag.json", "Lag exporter"),
    ("lag.json", "Lag status by group"),
    ("lag.json", "Time lag by group and topic"),
    ("lag.json", "Record lag by group and topic"),
    ("lag.json", "Backlog trend (records per minute)"),
    ("lag.json", "Produce vs consume rate"),
    ("lag.json", "Partitions by time lag"),
    ("lag.json", "Partitions by record lag"),
    ("pipeline.json", "Throughput by stage and outcome"),
    ("pipeline.json", "Records consumed by topic"),
    ("pipeline.json", "Outcomes in the time range"),
    ("pipeline.json", "Stage latency"),
    ("pipeline.json", "End-to-end latency"),
    ("pipeline.json", "Faust event processing time"),
    ("tenants.json", "Rejections by reason"),
    ("tenants.json", "Rejected share of decisions"),
    ("health.json", "Workers up"),
    ("health.json", "Workers ready"),
    ("health.json", "Registry breaker"),
    ("health.json", "Lag exporter"),
    ("health.json", "Up and ready per worker"),
    ("health.json", "Rebalances and recovery in progress"),
    ("health.json", "Rebalances completed"),
    ("health.json", "Lag exporter up"),
    ("health.json", "Lag exporter query duration"),
}

# What Grafana substitutes for its built-in variables, at the test's 1 s scrape interval.
GRAFANA_VARS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__interval_ms": "15000",
}

_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args!r} exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def exporter(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("exporter") / "exporter.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guardstream",
                "lag-exporter",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--interval",
                "0",
                "--group",
                stack.app_id,
            ],
            env=worker_env(stack),
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        _wait_http(url, proc, log)
        yield url
    finally:
        _stop(proc)


def _promtool_hint() -> str:
    return "prometheus is not installed: run scripts/ensure-prometheus.sh (`make test` does)"


@pytest.fixture(scope="module")
def prometheus(
    worker: Worker, exporter: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, _promtool_hint()
    tmp = tmp_path_factory.mktemp("prometheus")
    # The shipped scrape config with its job names (dashboards and alerts select on them),
    # pointed at this session's processes and scraped every second.
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    targets = {
        "guardstream-worker": f"127.0.0.1:{worker.settings.worker_web_port}",
        "guardstream-lag-exporter": exporter.removeprefix("http://").removesuffix("/metrics"),
    }
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job.pop("scrape_timeout", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/-/ready", proc, log)
        yield base
    finally:
        _stop(proc)


def _query(base: str, expr: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = r.json()
    return body


def _wait_for(base: str, expr: str, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = _query(base, expr)
        if body["status"] == "success" and body["data"]["result"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never saw {what} ({expr})")


def exported_names(metrics_text: str) -> set[str]:
    """Every series name a /metrics page can produce, from its TYPE lines and samples.

    Families without samples yet (a labelled counter nobody incremented) still count as
    exported: their TYPE line is there, and a dashboard may rightly show them empty.
    """
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            names.add(name)
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
            if kind in ("histogram", "summary"):
                names.update(f"{name}{s}" for s in ("_count", "_sum", "_created"))
            if kind == "histogram":
                names.add(f"{name}_bucket")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # ranges and subqueries
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (stage, le) (rate(a_bucket{stage=~"x|y"}[1m]))) '
        '/ on (tenant) group_left max without (period) (b{p="c d"} offset 5m) > bool 1e-9 '
        'and deriv((sum by (g) (c))[10m:1m]) or absent(up{job="w"})'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "up"}


def _substitute(expr: str, dashboard_vars: set[str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in GRAFANA_VARS:
            return GRAFANA_VARS[name]
        assert name in dashboard_vars, f"unknown variable ${name} in {expr}"
        return ".*"  # every dashboard variable is multi-value with "All" = .*, used with =~

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def _dashboard_queries(path: Path) -> Iterator[tuple[str, str]]:
    """(panel title, expression) for every panel target and query variable."""
    board = json.loads(path.read_text())
    variables = {v["name"] for v in board["templating"]["list"]}
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
            assert m, f"{path.name}: variable {v['name']} is not label_values(selector, label)"
            yield f"variable {v['name']}", _substitute(m.group(1), variables)
    for panel in board["panels"]:
        for t in panel.get("targets", []):
            yield panel["title"], _substitute(t["expr"], variables)


def _has_finite_value(result: dict[str, Any]) -> bool:
    data = result["data"]
    if data["resultType"] == "scalar":
        samples = [data["result"]]
    elif data["resultType"] == "vector":
        samples = [row["value"] for row in data["result"]]
    else:
        samples = [v for row in data["result"] for v in row["values"]]
    return any(math.isfinite(float(v)) for _, v in samples)


def test_dashboards_and_alerts_evaluate_against_real_metrics(
    stack: Settings, worker: Worker, exporter: str, prometheus: str
) -> None:
    t0 = time.monotonic()
    _wait_for(prometheus, 'up{job="guardstream-worker"} == 1', "the worker up")
    _wait_for(prometheus, 'up{job="guardstream-lag-exporter"} == 1', "the exporter up")
    # Labelled series appear with their first record, and Prometheus sees no increase in a
    # series' first sample: a first wave creates the series, the second is what rates and
    # quantiles measure (it holds rejections too: every fifth demo request is invalid).
    requests = produce.demo_requests(DEMO_REQUESTS)
    producer = produce.RequestProducer(stack)
    producer.send_all(requests[:FIRST_WAVE])
    _wait_for(
        prometheus,
        f'sum(guardstream_events_total{{stage="ingest"}}) >= {FIRST_WAVE}',
        "the first wave decided",
    )
    producer.send_all(requests[FIRST_WAVE:])
    _wait_for(
        prometheus,
        f'sum(guardstream_events_total{{stage="ingest"}}) >= {DEMO_REQUESTS}',
        "every demo request decided",
    )
    _wait_for(
        prometheus,
        f'guardstream_consumergroup_committed_offset{{group="{stack.app_id}"}}',
        "the worker's commits through the lag exporter",
    )
    time.sleep(3)  # a few more scrapes, so every rate window holds an increase

    worker_url = f"http://127.0.0.1:{worker.settings.worker_web_port}"
    exported = {"up"}
    exported |= exported_names(httpx.get(f"{worker_url}/metrics", timeout=5).text)
    exported |= exported_names(httpx.get(exporter, timeout=10).text)

    problems: list[str] = []
    checked = 0
    for path in DASHBOARDS:
        with_data: set[str] = set()
        titles: set[str] = set()
        for title, expr in _dashboard_queries(path):
            titles.add(title)
            checked += 1
            result = _query(prometheus, expr)
            if result["status"] != "success":
                problems.append(f"{path.name} / {title}: {result.get('error')} in {expr}")
                continue
            unknown = metric_names(expr) - exported
            if unknown:
                problems.append(f"{path.name} / {title}: nobody exports {sorted(unknown)}")
            if _has_finite_value(result):
                with_data.add(title)
        for board, title in MUST_HAVE_DATA:
            if board == path.name:
                if title not in titles:
                    problems.append(f"{board}: no panel titled {title!r} (update MUST_HAVE_DATA)")
                elif title not in with_data:
                    problems.append(f"{board} / {title}: no data after the demo traffic")
    assert {p.name for p in DASHBOARDS} == {
        "lag.json",
        "pipeline.json",
        "tenants.json",
        "health.json",
    }

    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        checked += 1
        result = _query(prometheus, rule["expr"])
        if result["status"] != "success":
            problems.append(f"alert {rule['alert']}: {result.get('error')}")
        unknown = metric_names(rule["expr"]) - exported
        if unknown:
            problems.append(f"alert {rule['alert']}: nobody exports {sorted(unknown)}")

    loaded = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded_rules = [r for g in loaded for r in g["rules"]]
    assert {r["name"] for r in loaded_rules} == {r["alert"] for r in rules}
    problems += [
        f"alert {r['name']}: {r.get('lastError')}" for r in loaded_rules if r["health"] == "err"
    ]

    assert not problems, "\n".join(problems)
    assert checked > 60  # the loops really ran over the dashboards and rules
    assert time.monotonic() - t0 < 90


def test_worker_health_pages(worker: Worker) -> None:
    base = f"http://127.0.0.1:{worker.settings.worker_web_port}"
    live = httpx.get(f"{base}/health/live", timeout=5)
    assert live.status_code == 200 and live.json()["live"] is True
    deadline = time.monotonic() + 60
    while True:
        ready = httpx.get(f"{base}/health/ready", timeout=5)
        if ready.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    body = ready.json()
    assert ready.status_code == 200, body
    assert body["ready"] is True and body["reasons"] == [] and body["assigned_partitions"] > 0
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert re.search(r"^guardstream_worker_ready 1\.0$", metrics, re.M), "gauge disagrees"


def test_exporter_reports_the_worker_group_from_the_brokers(
    worker: Worker, exporter: str, stack: Settings
) -> None:
    text = httpx.get(exporter, timeout=10).text
    assert "guardstream_lag_exporter_up 1.0" in text
    assert re.search(
        rf'^guardstream_consumergroup_members\{{group="{stack.app_id}"\}} [1-9]', text, re.M
    )
    # Every partition of the worker's ingress topic has a lag series, committed on or not.
    parts = re.findall(
        rf'^guardstream_consumergroup_lag\{{group="{stack.app_id}",partition="(\d+)",'
        rf'topic="{re.escape(stack.topic("requests"))}"\}} \d',
        text,
        re.M,
    )
    assert sorted(map(int, parts)) == list(range(stack.default_partitions))
