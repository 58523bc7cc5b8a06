"""The Grafana dashboard: every query parses with the real PromQL parser once
its template variables are filled in, names only what the metrics catalog has,
sums per-process series across replicas and follows the account variable;
the panels an operator needs are there, each on the datasource variable."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.promql import (
    GRAFANA_VALUES,
    ROOT,
    catalog_problems,
    parse,
    promtool_errors,
    substitute,
    unsummed_process_series,
    variables,
)
from worker.metrics import catalog

DASHBOARD = ROOT / "deploy" / "grafana" / "ozonetel-purge.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_PANELS = {
    "Backlog by lane",
    "ETA",
    "Allowance use",
    "Permits per minute vs the limit",
    "Answers by class",
    "Request latency",
    "Permit wait",
    "Dead letters by reason",
    "Token budget",
    "Token expiry",
    "Workers",
    "Outcomes",
}
# The value the account variable takes in these checks: a matcher must carry it.
ACCOUNT_SENTINEL = "account-from-the-variable"


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels (a collapsed row keeps its own) included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every target's expression, keyed by "panel title / refId"."""
    found: dict[str, str] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            key = f"{panel['title']} / {target['refId']}"
            assert key not in found, f"{key} twice"
            found[key] = target["expr"]
    return found


def _filled(expr: str) -> str:
    return substitute(expr, {**GRAFANA_VALUES, "account": ACCOUNT_SENTINEL})


def _all_queries() -> list[tuple[str, str]]:
    return sorted(queries(_dashboard()).items())


def test_the_panel_walk_reaches_panels_inside_collapsed_rows() -> None:
    nested = {
        "panels": [
            {"type": "row", "title": "r", "collapsed": True, "panels": [{"title": "inner"}]},
            {"title": "outer"},
        ]
    }
    assert [p["title"] for p in panels(nested)] == ["r", "inner", "outer"]
    collapsed = [p for p in _dashboard()["panels"] if p["type"] == "row" and p["collapsed"]]
    assert collapsed and all(row["panels"] for row in collapsed), "a collapsed row with panels"
    inner = {f"{p['title']} / {t['refId']}" for row in collapsed for p in row["panels"]
             for t in p["targets"]}  # fmt: skip
    assert inner and inner <= set(queries(_dashboard())), "nested panels' queries are checked"


def test_every_query_parses_with_the_real_promql_parser() -> None:
    found = queries(_dashboard())
    assert len(found) >= len(REQUIRED_PANELS)
    errors = promtool_errors({key: substitute(expr) for key, expr in found.items()})
    assert errors == {}, "\n".join(f"{key}: {error}" for key, error in errors.items())


def test_the_parser_check_reports_the_panel_whose_query_is_broken() -> None:
    found = queries(_dashboard())
    broken = {key: substitute(expr) for key, expr in found.items()}
    victim = sorted(broken)[0]
    broken[victim] = f"({broken[victim]}"  # an unclosed parenthesis
    assert set(promtool_errors(broken)) == {victim}


@pytest.mark.parametrize(("panel", "expr"), _all_queries())
def test_every_query_names_only_metrics_labels_and_values_of_the_catalog(
    panel: str, expr: str
) -> None:
    assert catalog_problems(_filled(expr)) == [], panel


@pytest.mark.parametrize(("panel", "expr"), _all_queries())
def test_every_query_sums_per_process_series_across_replicas(panel: str, expr: str) -> None:
    assert unsummed_process_series(_filled(expr)) == [], panel


@pytest.mark.parametrize(("panel", "expr"), _all_queries())
def test_every_query_follows_the_account_variable(panel: str, expr: str) -> None:
    for selector in parse(_filled(expr)).selectors:
        family = catalog.BY_NAME.get(re.sub(r"_(bucket|sum|count)$", "", selector.name or ""))
        assert family is not None, selector
        if "account" in family.labels:
            accounts = [(m.op, m.value) for m in selector.matchers if m.label == "account"]
            assert accounts == [("=~", ACCOUNT_SENTINEL)], f"{panel}: {selector.name} {accounts}"


def test_every_variable_used_is_one_grafana_or_the_dashboard_defines() -> None:
    dashboard = _dashboard()
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert defined == {"datasource", "account"}
    for key, expr in queries(dashboard).items():
        for name in variables(expr):
            assert name in defined or name.startswith("__"), f"{key}: ${name}"
            assert name in GRAFANA_VALUES, f"{key}: ${name} has no value in tests/promql.py"


def test_substitution_fills_every_form_of_a_variable() -> None:
    text = 'rate(x{account=~"$account",b="${account}",c="[[account]]"}[$__rate_interval]) $__range'
    assert substitute(text, {"account": "a", "__rate_interval": "5m", "__range": "1h"}) == (
        'rate(x{account=~"a",b="a",c="a"}[5m]) 1h'
    )
    with pytest.raises(KeyError):
        substitute("$nope")


def test_the_dashboard_has_the_operators_panels() -> None:
    titles = [p["title"] for p in panels(_dashboard()) if p["type"] != "row"]
    assert set(titles) >= REQUIRED_PANELS, REQUIRED_PANELS - set(titles)
    assert len(titles) == len(set(titles)), "titles are unique"


def test_every_panel_and_query_reads_the_datasource_variable() -> None:
    for panel in panels(_dashboard()):
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_the_template_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] and dashboard["title"]
    by_name = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    datasource = by_name["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    account = by_name["account"]
    assert account["type"] == "query" and account["datasource"] == DATASOURCE
    assert account["multi"] is True and account["includeAll"] is True
    query = account["query"] if isinstance(account["query"], str) else account["query"]["query"]
    assert query == account["definition"] == "label_values(ozp_queue_jobs, account)"
    match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
    assert match, query
    metric, label = match.groups()
    assert catalog.BY_NAME[metric].scope == "account", "one exporter lists every account"
    assert label in catalog.BY_NAME[metric].labels


def _panel(title: str) -> dict[str, Any]:
    (panel,) = [p for p in panels(_dashboard()) if p.get("title") == title]
    return panel


def test_allowance_use_draws_the_limit_as_a_line_at_one() -> None:
    panel = _panel("Allowance use")
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["unit"] == "percentunit"
    assert 1 in [step["value"] for step in defaults["thresholds"]["steps"]]
    assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "line+area", "dashed")
    assert defaults["max"] > 1, "room above the line"
    (target,) = panel["targets"]
    assert "ozp_allowance_used_ratio" in target["expr"]


@pytest.mark.parametrize(
    ("title", "family"),
    [
        ("Request latency", "ozp_request_duration_seconds"),
        ("Permit wait", "ozp_permit_wait_seconds"),
    ],
)
def test_latency_panels_show_the_median_p95_and_p99_over_every_replica(
    title: str, family: str
) -> None:
    found = set()
    for target in _panel(title)["targets"]:
        match = re.fullmatch(
            rf"histogram_quantile\((0\.\d+), sum by \(le\) \(rate\({family}_bucket\{{[^}}]*\}}"
            r"\[\$__rate_interval\]\)\)\)",
            target["expr"],
        )
        assert match, target["expr"]
        found.add(match[1])
    assert found == {"0.5", "0.95", "0.99"}


def test_answers_by_class_and_backlog_are_the_documented_queries() -> None:
    (answers,) = _panel("Answers by class")["targets"]
    assert re.fullmatch(
        r"sum by \(answer\) \(rate\(ozp_requests_total\{[^}]*\}\[\$__rate_interval\]\)\)",
        answers["expr"],
    )
    (backlog,) = _panel("Backlog by lane")["targets"]
    assert "lane" in parse(_filled(backlog["expr"])).grouping_labels


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    ids = [p["id"] for p in panels(_dashboard())]
    assert len(ids) == len(set(ids))
    for panel in panels(_dashboard()):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0, panel["title"]
