"""deploy/grafana/botter.json: imports cleanly, and every query is PromQL that reads only
metrics botter exports."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.deploy.conftest import DEPLOY
from tests.deploy.metrics_names import metric_names, run_promtool, unknown_metrics

DASHBOARD: Final = DEPLOY / "grafana" / "botter.json"
DATASOURCE: Final = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
ROWS: Final = ("Traffic", "Updates", "Queues", "Telegram", "Money", "Resources")
# Grafana's built-in variables, replaced by a value of their kind so promtool can parse.
GRAFANA_VARIABLES: Final = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "6h"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel, target


def test_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "botter"
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["id"] is None  # an exported dashboard; Grafana assigns the id


def test_panels_have_unique_ids_and_sit_in_the_rows(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    assert all(isinstance(panel_id, int) for panel_id in ids)
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert tuple(rows) == ROWS
    graphs = [panel for panel in panels if panel["type"] != "row"]
    assert len(graphs) >= 2 * len(ROWS)
    for panel in graphs:
        assert panel["title"], panel["id"]
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_datasource_is_an_import_input(dashboard: dict[str, Any]) -> None:
    # Importing asks for a Prometheus data source and writes its uid over
    # ${DS_PROMETHEUS}; a provisioned copy gets it from the variable of the same name.
    assert dashboard["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes botter",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel, target in queries(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert target["datasource"] == DATASOURCE, panel["title"]
    used = set(re.findall(r"\$\{(\w+)\}", DASHBOARD.read_text()))
    assert used == {"DS_PROMETHEUS"}


def test_queries_read_only_metrics_botter_exports(dashboard: dict[str, Any]) -> None:
    read = set()
    for panel, target in queries(dashboard):
        assert metric_names(target["expr"]), panel["title"]
        assert unknown_metrics(target["expr"]) == set(), panel["title"]
        read |= metric_names(target["expr"])
    # One look at each part of botter: a dashboard that lost a row would show here.
    for metric in (
        "botter_http_request_duration_seconds_bucket",
        "botter_updates_received_total",
        "botter_update_lag_seconds_bucket",
        "botter_jobs_oldest_age_seconds",
        "botter_telegram_calls_total",
        "botter_revenue_stars_total",
        "botter_payments_without_grant",
        "botter_db_pool_connections",
        "botter_redis_used_memory_bytes",
    ):
        assert metric in read, metric


def test_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query as a recording rule."""
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for panel, target in queries(dashboard):
        expr = target["expr"]
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, (panel["title"], expr)
        rules.append(f"      - record: dashboard:panel_{panel['id']}:{target['refId']}")
        rules.append(f"        expr: {json.dumps(expr)}")
    rule_file = tmp_path / "dashboard.yml"
    rule_file.write_text("\n".join(rules) + "\n")
    report = run_promtool("check", "rules", rule_file)
    assert f"SUCCESS: {len(list(queries(dashboard)))} rules found" in report, report
