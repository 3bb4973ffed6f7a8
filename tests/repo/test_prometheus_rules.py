"""The alert rules and the scrape config, checked and exercised by Prometheus' own `promtool`.

`promtool check` proves they load; `promtool test rules` runs each alert's expression over
synthetic series, so a rule that parses but can never fire (or fires on a healthy system)
fails too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import REPO_ROOT

REPO = REPO_ROOT
ALERTS = REPO / "prometheus" / "alerts.yml"
CONFIG = REPO / "prometheus" / "prometheus.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, (
        "promtool is not installed: run scripts/ensure-prometheus.sh (`make test` does), "
        "which installs Debian's prometheus package"
    )
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def test_promtool_accepts_the_alert_rules() -> None:
    out = _promtool("check", "rules", str(ALERTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout


def test_promtool_accepts_the_scrape_config_and_finds_the_rules() -> None:
    # rule_files are relative to the config's directory, as they are in the container.
    out = _promtool("check", "config", str(CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    assert jobs == {"guardstream-worker", "guardstream-lag-exporter"}


@pytest.mark.parametrize("name", sorted(_rules()))
def test_every_alert_waits_is_graded_and_says_what_to_do(name: str) -> None:
    rule = _rules()[name]
    assert rule.get("for"), f"{name}: no `for`, so one bad scrape pages someone"
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert len(rule["annotations"]["summary"]) > 10
    # A description names the cause and the next step; short ones never do.
    assert len(rule["annotations"]["description"]) > 120, f"{name}: description too thin"


def _s(series: str, values: str) -> dict[str, str]:
    return {"series": series, "values": values}


LAG = 'guardstream_consumergroup_lag{group="g",topic="t",partition="0"}'
LAG_S = 'guardstream_consumergroup_lag_seconds{group="g",topic="t",partition="0"}'
COMMITTED = 'guardstream_consumergroup_committed_offset{group="g",topic="t",partition="0"}'
MEMBERS = 'guardstream_consumergroup_members{group="g"}'
STATUS = 'guardstream_consumergroup_lag_status{group="g",topic="t",partition="0"}'
STATUS_1 = 'guardstream_consumergroup_lag_status{group="g",topic="t",partition="1"}'
W = 'job="guardstream-worker",instance="w1:6066"'
W2 = 'job="guardstream-worker",instance="w2:6066"'
BREAKER = 'guardstream_dispatch_breaker_state{%s,deployment="gpt-4o-primary"}'
COMPLETIONS = 'guardstream_dispatch_completions_total{outcome="%s",code="%s"}'
UNAVAILABLE = COMPLETIONS % ("FAILED", "PROVIDER_UNAVAILABLE")

# (alert, input series at 1-minute steps, evaluation time, alerts expected from the expression)
# Budget series are hourly: a day of minutes would make promtool slow for no extra insight.
HOURLY = {"GuardstreamTenantBudgetNearlySpent"}
SCENARIOS: list[tuple[str, list[dict[str, str]], str, int]] = [
    ("GuardstreamConsumerLagHigh", [_s(LAG_S, "0+10x20")], "10m", 1),
    ("GuardstreamConsumerLagHigh", [_s(LAG_S, "30x20")], "10m", 0),
    ("GuardstreamConsumerLagCritical", [_s(LAG_S, "0+60x20")], "10m", 1),
    ("GuardstreamConsumerLagCritical", [_s(LAG_S, "0+10x20")], "10m", 0),
    ("GuardstreamConsumerLagGrowing", [_s(LAG, "0+5x30")], "20m", 1),
    ("GuardstreamConsumerLagGrowing", [_s(LAG, "300-5x30")], "20m", 0),  # draining
    ("GuardstreamConsumerLagGrowing", [_s(LAG, "40x30")], "20m", 0),  # steady backlog
    ("GuardstreamConsumerStalled", [_s(COMMITTED, "100x20"), _s(LAG, "50x20")], "15m", 1),
    ("GuardstreamConsumerStalled", [_s(COMMITTED, "100+10x20"), _s(LAG, "50x20")], "15m", 0),
    ("GuardstreamConsumerStalled", [_s(COMMITTED, "100x20"), _s(LAG, "0x20")], "15m", 0),
    ("GuardstreamNoConsumers", [_s(MEMBERS, "0x10"), _s(LAG, "5x10")], "5m", 1),
    ("GuardstreamNoConsumers", [_s(MEMBERS, "0x10"), _s(LAG, "0x10")], "5m", 0),
    ("GuardstreamNoConsumers", [_s(MEMBERS, "2x10"), _s(LAG, "5x10")], "5m", 0),
    # One alert per group and topic however many partitions share the status.
    ("GuardstreamLagStatusStop", [_s(STATUS, "2x10"), _s(STATUS_1, "2x10")], "6m", 1),
    ("GuardstreamLagStatusStop", [_s(STATUS, "3x10")], "6m", 0),
    ("GuardstreamLagStatusStall", [_s(STATUS, "3x10"), _s(STATUS_1, "0x10")], "6m", 1),
    ("GuardstreamLagStatusStall", [_s(STATUS, "1x10")], "6m", 0),  # WARN is not STALL
    ("GuardstreamLagStatusRewind", [_s(STATUS, "0 4x5")], "3m", 1),
    ("GuardstreamLagStatusRewind", [_s(STATUS, "2x5")], "3m", 0),
    (
        "GuardstreamDeadLetterRate",
        [
            _s('guardstream_events_total{stage="ingest",outcome="metering"}', "0+600x20"),
            _s('guardstream_deadletters_total{stage="ingest",reason="SCHEMA_UNKNOWN"}', "0+60x20"),
        ],
        "15m",
        1,
    ),
    (
        "GuardstreamDeadLetterRate",
        [
            _s('guardstream_events_total{stage="ingest",outcome="metering"}', "0+600x20"),
            _s('guardstream_deadletters_total{stage="ingest",reason="SCHEMA_UNKNOWN"}', "0+6x20"),
        ],
        "15m",
        0,
    ),
    (
        "GuardstreamRejectionSpike",
        [
            _s(
                'guardstream_rejections_total{stage="meter",reason="RATE_LIMITED"}',
                "0+60x60 3600+600x15",
            )
        ],
        "70m",
        1,
    ),
    (
        "GuardstreamRejectionSpike",
        [_s('guardstream_rejections_total{stage="meter",reason="RATE_LIMITED"}', "0+600x75")],
        "70m",
        0,  # high but steady: its own baseline
    ),
    (
        "GuardstreamBudgetExhausted",
        [_s('guardstream_rejections_total{stage="meter",reason="BUDGET_EXCEEDED"}', "0+3x20")],
        "10m",
        1,
    ),
    (
        "GuardstreamBudgetExhausted",
        [_s('guardstream_rejections_total{stage="meter",reason="RATE_LIMITED"}', "0+3x20")],
        "10m",
        0,
    ),
    (
        "GuardstreamBudgetAlerts",
        [_s('guardstream_budget_alerts_total{kind="threshold_90",tier="free"}', "0x5 1x10")],
        "8m",
        1,
    ),
    (
        "GuardstreamBudgetAlerts",
        [_s('guardstream_budget_alerts_total{kind="threshold_90",tier="free"}', "3x20")],
        "8m",
        0,
    ),
    (
        "GuardstreamTenantBudgetNearlySpent",
        [
            _s('guardstream_tenant_spend_micros_total{tenant="acme"}', "0+60000x30"),
            _s('guardstream_tenant_budget_micros{tenant="acme",period="daily"}', "1000000x30"),
            _s('guardstream_tenant_budget_micros{tenant="acme",period="monthly"}', "1x30"),
        ],
        "1440m",
        1,
    ),
    (
        "GuardstreamTenantBudgetNearlySpent",
        [
            _s('guardstream_tenant_spend_micros_total{tenant="acme"}', "0+30000x30"),
            _s('guardstream_tenant_budget_micros{tenant="acme",period="daily"}', "1000000x30"),
        ],
        "1440m",
        0,
    ),
    ("GuardstreamWorkerDown", [_s(f"up{{{W}}}", "1 1 0x10")], "5m", 1),
    ("GuardstreamWorkerDown", [_s(f"up{{{W}}}", "1x10")], "5m", 0),
    ("GuardstreamAllWorkersDown", [_s('up{job="guardstream-lag-exporter"}', "1x10")], "5m", 1),
    ("GuardstreamAllWorkersDown", [_s(f"up{{{W}}}", "1x10")], "5m", 0),
    ("GuardstreamWorkerNotReady", [_s(f"guardstream_worker_ready{{{W}}}", "0x10")], "5m", 1),
    ("GuardstreamWorkerNotReady", [_s(f"guardstream_worker_ready{{{W}}}", "1x10")], "5m", 0),
    (
        "GuardstreamRebalanceStuck",
        [
            _s(f"faust_total_rebalances{{{W}}}", "0x10"),
            _s(f"faust_total_rebalances_recovering{{{W}}}", "1x10"),
        ],
        "5m",
        1,
    ),
    (
        "GuardstreamRebalanceStuck",
        [
            _s(f"faust_total_rebalances{{{W}}}", "0x10"),
            _s(f"faust_total_rebalances_recovering{{{W}}}", "0x10"),
        ],
        "5m",
        0,
    ),
    (
        "GuardstreamRebalanceStorm",
        [_s(f"faust_rebalance_done_latency_count{{{W}}}", "0+1x30")],
        "20m",
        1,
    ),
    (
        "GuardstreamRebalanceStorm",
        [_s(f"faust_rebalance_done_latency_count{{{W}}}", "3x30")],
        "20m",
        0,
    ),
    (
        "GuardstreamLagExporterDown",
        [
            _s('up{job="guardstream-lag-exporter"}', "1x10"),
            _s('guardstream_lag_exporter_up{job="guardstream-lag-exporter"}', "0x10"),
        ],
        "5m",
        1,
    ),
    (
        "GuardstreamLagExporterDown",
        [
            _s('up{job="guardstream-lag-exporter"}', "1x10"),
            _s('guardstream_lag_exporter_up{job="guardstream-lag-exporter"}', "1x10"),
        ],
        "5m",
        0,
    ),
    (
        "GuardstreamRegistryBreakerOpen",
        [_s(f"guardstream_registry_breaker_open{{{W}}}", "0 1x10")],
        "5m",
        1,
    ),
    (
        "GuardstreamInputGap",
        [_s('guardstream_input_gaps_total{stage="meter"}', "0x3 12x10")],
        "6m",
        1,
    ),
    ("GuardstreamInputGap", [_s('guardstream_input_gaps_total{stage="meter"}', "0x10")], "6m", 0),
    (
        "GuardstreamRegistryBreakerOpen",
        [_s(f"guardstream_registry_breaker_open{{{W}}}", "0x10")],
        "5m",
        0,
    ),
    # A down deployment's breaker goes open (2), half-open (1) when its cool-down ends, open
    # again when the probe fails: it never closes, and never stays at 2.
    (
        "GuardstreamDispatchBreakerOpen",
        [_s(BREAKER % W, "0 2 1 2 1 2 1 2 1 2 1 2"), _s(BREAKER % W2, "0 0 2 1 2 1 2 1 2 1 2")],
        "8m",
        1,  # one alert per deployment, however many workers see it down
    ),
    (
        "GuardstreamDispatchBreakerOpen",
        [_s(BREAKER % W, "0 2 0 2 0 2 0 2 0 2 0 2")],
        "8m",
        0,  # probes succeed in between: flapping, not down
    ),
    (
        "GuardstreamDispatchBreakerOpen",
        [_s(BREAKER % W, "0 2 1x12")],
        "10m",
        0,  # half-open since, with no traffic to probe it: nothing is known to fail
    ),
    ("GuardstreamDispatchBreakerOpen", [_s(BREAKER % W, "0x12")], "8m", 0),
    ("GuardstreamDispatchProviderUnavailable", [_s(UNAVAILABLE, "0+6x20")], "15m", 1),
    ("GuardstreamDispatchProviderUnavailable", [_s(UNAVAILABLE, "0+0.6x20")], "15m", 0),
    (
        "GuardstreamDispatchProviderUnavailable",
        [
            _s(COMPLETIONS % ("FAILED", "TIMEOUT"), "0+60x20"),
            _s(COMPLETIONS % ("COMPLETED", ""), "0+600x20"),
        ],
        "15m",
        0,
    ),
]


def test_every_alert_has_a_firing_and_a_quiet_scenario() -> None:
    fires = {name for name, _, _, n in SCENARIOS if n}
    quiet = {name for name, _, _, n in SCENARIOS if not n}
    assert fires == set(_rules()) and quiet == set(_rules())


def test_alert_expressions_fire_exactly_when_they_should(tmp_path: Path) -> None:
    rules = _rules()
    by_interval: dict[str, list[dict[str, Any]]] = {"1m": [], "1h": []}
    for name, series, at, expected in SCENARIOS:
        # count() turns "which series fire, with which value" into one number to compare.
        samples = [{"labels": "{}", "value": expected}] if expected else []
        interval = "1h" if name in HOURLY else "1m"
        by_interval[interval].append(
            {
                "name": f"{name} expecting {expected}",
                "interval": interval,
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": f"count(({rules[name]['expr']}))",
                        "eval_time": at,
                        "exp_samples": samples,
                    }
                ],
            }
        )
    for interval, tests in by_interval.items():
        # promtool also evaluates every rule at evaluation_interval up to eval_time; at 1m,
        # a day of that costs seconds.
        spec = tmp_path / f"alerts_test_{interval}.yml"
        spec.write_text(
            yaml.safe_dump(
                {"rule_files": [str(ALERTS)], "evaluation_interval": interval, "tests": tests}
            )
        )
        out = _promtool("test", "rules", str(spec))
        assert out.returncode == 0, out.stdout + out.stderr
