"""The alert rules: promtool accepts them and runs their unit tests, every alert
has a case where it fires and one where it does not, the PrometheusRule holds
the same groups, and every query names only what the metrics catalog has."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql import (
    FREE_LABELS,
    HISTOGRAM_BUCKETS,
    LABEL_VALUES,
    ROOT,
    catalog_problems,
    parse,
    promtool,
    promtool_errors,
    require_promtool,
    unsummed_process_series,
)
from worker.metrics import catalog
from worker.vendor.outcomes import DEAD_REASONS

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"

# Every alert and its severity: an alert added, dropped or downgraded shows here.
EXPECTED_ALERTS = {
    "OzonetelPurgeAccountHalted": "critical",
    "OzonetelPurgeTokenBudgetSpent": "warning",
    "OzonetelPurgeBacklogNotDraining": "warning",
    "OzonetelPurgeDeadLettersGrowing": "warning",
    "OzonetelPurgeDataDeadLettersGrowing": "info",
    "OzonetelPurgeNoWorkers": "critical",
    "OzonetelPurgeVendorErrors": "warning",
    "OzonetelPurgeRedisDown": "critical",
    "OzonetelPurgeExporterAbsent": "critical",
    "OzonetelPurgeAllowanceExceeded": "critical",
}
DURATION = re.compile(r"(\d+(ms|[smhdwy]))+")


def _groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def _alerts() -> dict[str, dict[str, Any]]:
    alerts: dict[str, dict[str, Any]] = {}
    for group in _groups():
        for rule in group["rules"]:
            assert "alert" in rule, f"{rule.get('record')}: only alerts belong here"
            assert rule["alert"] not in alerts, f"{rule['alert']} twice"
            alerts[rule["alert"]] = rule
    return alerts


def _expressions() -> list[tuple[str, str]]:
    return [(name, rule["expr"]) for name, rule in _alerts().items()]


# ---- promtool ------------------------------------------------------------------


def test_promtool_accepts_the_rules_file() -> None:
    found = promtool("check", "rules", str(RULES))
    assert found.returncode == 0, found.stdout + found.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in found.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    found = promtool("test", "rules", *map(str, RULE_TESTS))
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stdout.count("SUCCESS") == len(RULE_TESTS), found.stdout


# Changes that would make an alert wrong; the unit tests must notice each one.
BROKEN_RULES = {
    "allowance at exactly 100% fires": (
        "max by (account) (ozp_allowance_used_ratio) > 1",
        "max by (account) (ozp_allowance_used_ratio) >= 1",
    ),
    "one replica's errors read as the fleet's": (
        'sum by (account) (rate(ozp_requests_total{answer=~"5xx',
        'sum by (account, instance) (rate(ozp_requests_total{answer=~"5xx',
    ),
    "a paused account counts as not draining": ('state=~"paused|halted"', 'state=~"halted"'),
    "held jobs count as a waiting backlog": ("urgent|bulk|retry", "urgent|bulk|retry|in_flight"),
    "a few requests are enough to page": (
        "sum by (account) (increase(ozp_requests_total[10m])) >= 20",
        "sum by (account) (increase(ozp_requests_total[10m])) >= 0",
    ),
    "the budget must be exceeded, not reached": (">= on (account)", "> on (account)"),
    "held jobs alone need no worker": (
        "sum by (account) (ozp_queue_jobs) > 0",
        'sum by (account) (ozp_queue_jobs{lane!="in_flight"}) > 0',
    ),
    "a no_record dead letter is a warning": ('reason!~"no_record|', 'reason!~"'),
    "a reason's first dead letters pass unseen": (
        "unless on (account, reason) ozp_dead_letters offset 30m",
        "unless on (account, reason) ozp_dead_letters",
    ),
    "a new Prometheus takes old dead letters for new ones": (
        "and on (account) ozp_eta_seconds offset 30m",
        "and on (account) ozp_eta_seconds",
    ),
}


@pytest.mark.parametrize("change", sorted(BROKEN_RULES))
def test_the_unit_tests_catch_a_broken_rule(change: str, tmp_path: Path) -> None:
    require_promtool()
    old, new = BROKEN_RULES[change]
    text = RULES.read_text()
    assert old in text, f"{old!r} is not in rules.yml: update this test"
    (tmp_path / "rules.yml").write_text(text.replace(old, new))
    tests = tmp_path / "tests"
    tests.mkdir()
    for path in RULE_TESTS:
        shutil.copy(path, tests / path.name)
    assert promtool("check", "rules", str(tmp_path / "rules.yml")).returncode == 0
    found = promtool("test", "rules", *sorted(map(str, tests.glob("*.yml"))))
    assert found.returncode != 0, f"the unit tests pass with {change}:\n{found.stdout}"


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        document = yaml.safe_load(path.read_text())
        rule_files = [(path.parent / name).resolve() for name in document["rule_files"]]
        assert rule_files == [RULES.resolve()], f"{path.name} must test rules.yml itself"
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                expected = case.get("exp_alerts") or []
                (fires if expected else quiet).add(case["alertname"])
                for alert in expected:
                    assert set(alert["exp_annotations"]) == {"summary", "description"}, case
                    assert "severity" in alert["exp_labels"], case
    assert fires == set(EXPECTED_ALERTS), f"no firing case: {set(EXPECTED_ALERTS) - fires}"
    assert quiet == set(EXPECTED_ALERTS), f"no quiet case: {set(EXPECTED_ALERTS) - quiet}"


# ---- the rules themselves ----------------------------------------------------------


def test_the_alerts_have_a_severity_a_summary_a_description_and_a_wait() -> None:
    alerts = _alerts()
    assert {name: rule["labels"]["severity"] for name, rule in alerts.items()} == EXPECTED_ALERTS
    for name, rule in alerts.items():
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert all(len(text.strip()) > 20 for text in rule["annotations"].values()), name
        assert DURATION.fullmatch(str(rule["for"])), f"{name}: for: {rule['for']!r}"
        # Alertmanager and the Operator take label and annotation values as strings.
        assert all(isinstance(v, str) for v in [*rule["labels"].values()]), name


def test_allowance_over_the_limit_is_critical_at_once_and_called_a_bug() -> None:
    rule = _alerts()["OzonetelPurgeAllowanceExceeded"]
    assert rule["labels"]["severity"] == "critical"
    assert re.fullmatch(r"0[smh]?", str(rule["for"])), "a single scrape over 100% is the bug"
    assert "bug" in rule["annotations"]["summary"] + rule["annotations"]["description"]
    assert re.search(r"\)\s*>\s*1$", rule["expr"].strip()), "at exactly 100% it must not fire"


def _reason_matchers(alert: str) -> set[tuple[str, str]]:
    query = parse(_alerts()[alert]["expr"])
    return {(m.op, m.value) for s in query.selectors for m in s.matchers if m.label == "reason"}


def test_the_two_dead_letter_alerts_share_out_every_reason() -> None:
    alerts = _alerts()
    (product,) = _reason_matchers("OzonetelPurgeDeadLettersGrowing")
    (data,) = _reason_matchers("OzonetelPurgeDataDeadLettersGrowing")
    # The same regex, negated: each reason in exactly one alert, new ones in the warning.
    assert (product[0], data[0]) == ("!~", "=~")
    assert product[1] == data[1]
    assert set(data[1].split("|")) < set(DEAD_REASONS)
    for alert in ("OzonetelPurgeDeadLettersGrowing", "OzonetelPurgeDataDeadLettersGrowing"):
        assert "reason" in parse(alerts[alert]["expr"]).grouping_labels, "keep the reason label"


def test_the_prometheus_rule_holds_exactly_the_rules_files_groups() -> None:
    (document,) = [d for d in yaml.safe_load_all(PROMETHEUS_RULE.read_text()) if d]
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    assert document["spec"]["groups"] == _groups(), (
        "deploy/kubernetes/prometheusrule.yaml's spec.groups differ from "
        "deploy/prometheus/rules.yml's groups: copy the change across"
    )


@pytest.mark.parametrize(("alert", "expr"), _expressions())
def test_every_rule_names_only_metrics_labels_and_values_of_the_catalog(
    alert: str, expr: str
) -> None:
    assert catalog_problems(expr) == [], alert


@pytest.mark.parametrize(("alert", "expr"), _expressions())
def test_process_series_are_summed_across_replicas_in_every_rule(alert: str, expr: str) -> None:
    assert unsummed_process_series(expr) == [], alert
    for selector in parse(expr).selectors:
        family = catalog.BY_NAME.get(selector.name or "")
        if family is not None and family.scope == "process":
            assert "instance" not in parse(expr).grouping_labels, alert


# ---- the checker catches what it must -----------------------------------------------------

MISTAKES = {
    "ozp_request_total": "not in worker/metrics/catalog.py",  # misspelt
    "sum(rate(ozp_requests[5m]))": "not in worker/metrics/catalog.py",  # counter without _total
    '{__name__="ozp_backlog"}': "not in worker/metrics/catalog.py",
    "ozp_workers_bucket": "not in worker/metrics/catalog.py",  # a gauge has no buckets
    "ozp_request_duration_seconds > 1": "is a histogram",
    'ozp_queue_jobs{lane="bulck"}': "'bulck' is not one of",
    'ozp_queue_jobs{lanes="bulk"}': "has no label 'lanes'",
    'ozp_oldest_job_age_seconds{lane="delayed"}': "'delayed' is not one of",  # no age
    'sum(rate(ozp_requests_total{answer=~"5xx|timout"}[5m]))': "'timout' not one of",
    'sum(rate(ozp_requests_total{answer=~"50[0-9]"}[5m]))': "matches none of",
    'ozp_account_state{state="stopped"}': "'stopped' is not one of",
    'sum(rate(ozp_outcomes_total{reason="no_records"}[5m]))': "'no_records' is not one of",
    'sum(rate(ozp_permits_total{result="granted"}[5m]))': "'granted' is not one of",
    'ozp_dead_letters{reason="deleted"}': "'deleted' is not one of",
    'sum(rate(ozp_permit_wait_seconds_bucket{le="0.3"}[5m]))': "'0.3' is not one of",
    "sum by (acount) (ozp_queue_jobs)": "grouping by 'acount'",
    "sum by (le) (ozp_queue_jobs)": "grouping by 'le'",  # le only on buckets
    "sum(rat(ozp_requests_total[5m]))": "unknown function 'rat'",
    "sum(rate(ozp_requests_total[5m])": "unclosed (",
}


@pytest.mark.parametrize("expr", sorted(MISTAKES))
def test_the_catalog_checker_catches_a_mistake(expr: str) -> None:
    problems = catalog_problems(expr)
    assert any(MISTAKES[expr] in problem for problem in problems), problems


CORRECT = [
    "histogram_quantile(0.95, sum by (le) (rate(ozp_request_duration_seconds_bucket[5m])))",
    "sum(rate(ozp_permit_wait_seconds_sum[5m])) / sum(rate(ozp_permit_wait_seconds_count[5m]))",
    'sum(rate(ozp_request_duration_seconds_bucket{le="+Inf"}[5m]))',
    'sum(rate(ozp_request_duration_seconds_bucket{le="2.5"}[5m]))',
    'sum by (outcome) (increase(ozp_outcomes_total{reason=""}[1h]))',
    'sum by (who) (label_replace(ozp_workers, "who", "$1", "account", "(.*)"))',
    'SUM BY (lane) (ozp_queue_jobs{lane!~"delayed|in_flight"})',
    'sum(ozp_queue_jobs{lane=~"u.*"}) offset 5m',
    "max_over_time(ozp_eta_seconds[1h:5m])",
    "sum(increase(ozp_redis_reconnects_total[1h]))",
]


@pytest.mark.parametrize("expr", CORRECT)
def test_the_catalog_checker_accepts_correct_queries(expr: str) -> None:
    assert catalog_problems(expr) == []
    assert unsummed_process_series(expr) == []


@pytest.mark.parametrize(
    "expr",
    [
        "rate(ozp_requests_total[5m]) > 0",
        "max by (account) (rate(ozp_requests_total[5m]))",
        "histogram_quantile(0.9, rate(ozp_request_duration_seconds_bucket[5m]))",
    ],
)
def test_the_replica_checker_catches_a_process_series_read_alone(expr: str) -> None:
    assert unsummed_process_series(expr) != []


def test_every_label_of_the_catalog_has_known_values_or_is_free() -> None:
    # A label added to the catalog must be taught to the checker, or it would pass unchecked.
    for family in catalog.FAMILIES:
        for label in family.labels:
            assert label in FREE_LABELS or (family.name, label) in LABEL_VALUES, (family, label)
        if family.kind == "histogram":
            assert family.name in HISTOGRAM_BUCKETS, family.name
    assert {name for name, _ in LABEL_VALUES} <= set(catalog.BY_NAME)


def test_promtool_errors_names_the_query_that_does_not_parse() -> None:
    require_promtool()
    errors = promtool_errors(
        {
            "good": "sum(rate(ozp_requests_total[5m]))",
            "unclosed": "sum(rate(ozp_requests_total[5m])",
            "unknown function": "sum(rat(ozp_requests_total[5m]))",
            "also good": "ozp_queue_jobs",
        }
    )
    assert set(errors) == {"unclosed", "unknown function"}, errors
    assert "rat" in errors["unknown function"]
