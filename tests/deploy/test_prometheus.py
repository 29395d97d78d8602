"""deploy/prometheus: the config and the alert rules, checked and unit-tested by promtool,
and held to the metrics botter really exports."""

import json
import re
from pathlib import Path
from typing import Any, Final

import pytest

from tests.deploy.conftest import DEPLOY
from tests.deploy.metrics_names import (
    exported_series,
    metric_names,
    promtool,
    run_promtool,
    unknown_metrics,
)

PROMETHEUS: Final = DEPLOY / "prometheus"
CONFIG: Final = PROMETHEUS / "prometheus.yml"
ALERTS: Final = PROMETHEUS / "alerts.yml"
ALERTS_TEST: Final = PROMETHEUS / "alerts_test.yml"
# Prometheus's own series an alert may read besides botter's.
PROMETHEUS_SERIES: Final = frozenset({"up"})
SEVERITIES: Final = frozenset({"critical", "warning"})


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml_subset(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_config_is_valid_with_its_rules() -> None:
    # rule_files are resolved beside the config, where alerts.yml is shipped.
    report = run_promtool("check", "config", CONFIG)
    assert "is valid prometheus config file syntax" in report, report
    assert "SUCCESS: 1 rule files found" in report, report


def test_config_scrapes_every_part_every_15_s() -> None:
    config = load_yaml_subset(CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "botter-app": ["botter-app-1:3000", "botter-app-2:3000", "botter-app-3:3000"],
        "botter-worker": ["botter-worker:3001"],
        "nginx": ["nginx-exporter:9113"],
    }


def test_commented_kubernetes_example_is_a_valid_config(tmp_path: Path) -> None:
    """Uncommented, the example discovers botter's pods and keeps each one's metrics port.

    Debian's Prometheus is built without Kubernetes discovery, so promtool checks the rest
    of each job with its discovery swapped for a static target (a JSON config is YAML too).
    """
    example = [
        line.removeprefix("  #").removeprefix(" ")
        for line in CONFIG.read_text().splitlines()
        if re.match(r"  # ?(- |  |$)", line)
    ]
    jobs = load_yaml_subset("\n".join(example))
    assert [job["job_name"] for job in jobs] == ["botter-app", "botter-worker"]
    # deploy/k8s labels botter's pods by name and component.
    for job, component, port in zip(jobs, ("web", "worker"), ("3000", "3001"), strict=True):
        discovery = job.pop("kubernetes_sd_configs")
        assert discovery == [{"role": "pod", "namespaces": {"names": ["botter"]}}]
        keep = {
            rule["source_labels"][0].removeprefix("__meta_kubernetes_pod_"): rule["regex"]
            for rule in job["relabel_configs"]
            if rule.get("action") == "keep"
        }
        assert keep == {
            "label_app_kubernetes_io_name": "botter",
            "label_app_kubernetes_io_component": component,
            "container_port_number": port,
        }
        job["static_configs"] = [{"targets": [f"{job['job_name']}-1:{port}"]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({"scrape_configs": jobs}))
    report = run_promtool("check", "config", config)
    assert "is valid prometheus config file syntax" in report, report


def test_rules_are_valid() -> None:
    report = run_promtool("check", "rules", ALERTS)
    # promtool's count proves the reader below missed no rule.
    assert f"SUCCESS: {len(alert_rules())} rules found" in report, report


def test_rules_unit_tests_pass() -> None:
    report = run_promtool("test", "rules", ALERTS_TEST)
    assert "SUCCESS" in report, report


def test_every_alert_waits_is_labelled_and_says_what_to_do() -> None:
    rules = alert_rules()
    assert len(rules) >= 17
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for") or ""), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert len(rule["annotations"]["summary"]) > 10, name
        assert len(rule["annotations"]["description"]) > 100, name


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in load_yaml_subset(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if case["exp_alerts"] == []}
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "never shown firing"
    assert names - quiet == set(), "never shown quiet"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def test_alerts_read_only_metrics_botter_exports() -> None:
    for rule in alert_rules():
        expr = rule["expr"]
        assert metric_names(expr), rule["alert"]
        assert unknown_metrics(expr, PROMETHEUS_SERIES) == set(), rule["alert"]


@pytest.mark.parametrize(
    ("expr", "unknown"),
    [
        ("sum(rate(botter_updates_received_total[5m]))", set()),
        # A counter without _total, a gauge or a histogram with a suffix it does not have.
        ("sum(rate(botter_updates_received[5m]))", {"botter_updates_received"}),
        ("botter_inbox_pending_total > 0", {"botter_inbox_pending_total"}),
        ("botter_http_request_duration_seconds > 1", {"botter_http_request_duration_seconds"}),
        # A renamed metric, a typo, and a name hidden in __name__.
        ("max(botter_no_such_metric) > 0", {"botter_no_such_metric"}),
        ('{__name__="botter_inbox_pending"}', {"__name__"}),
        # Labels, strings, ranges, functions, modifiers and numbers are not metrics.
        (
            "histogram_quantile(0.99, sum by (le, route) (rate(botter_update_lag_seconds_bucket"
            '{route="/webhook/telegram/{bot_id}", job=~"a|b"}[$__rate_interval] offset 5m)))'
            " > 1e3 and on (instance) group_left botter_db_pool_connections"
            ' unless absent(up{job="x"}) * bool 0x1F',
            {"up"},
        ),
    ],
)
def test_metric_check_catches_unknown_names(expr: str, unknown: set[str]) -> None:
    assert unknown_metrics(expr) == unknown


def test_exported_series_follow_the_naming_rules() -> None:
    series = exported_series()
    assert "botter_updates_received_total" in series
    assert "botter_http_request_duration_seconds_bucket" in series
    assert "botter_inbox_pending" in series
    assert all(name.startswith("botter_") for name in series)


def test_missing_promtool_fails_with_the_package_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as failed:
        promtool()
    message = str(failed.value)
    assert "\n" not in message
    assert "prometheus" in message
    assert "apt-get install" in message


# promtool reads these files; the tests read them with this small reader, which knows the
# block style they are written in (block mappings and sequences, plain and quoted scalars,
# | and > block scalars, [plain, items] and {}) and refuses anything else rather than guess.


class YamlSubsetError(ValueError):
    pass


def load_yaml_subset(text: str) -> Any:
    reader = _YamlSubset(text.splitlines())
    start = reader.peek()
    if start is None:
        return None
    value = reader.node(start[0])
    if reader.peek() is not None:
        raise reader.error("unexpected indentation")
    return value


class _YamlSubset:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.at = 0

    def error(self, message: str) -> YamlSubsetError:
        return YamlSubsetError(f"line {self.at + 1}: {message}")

    def peek(self) -> tuple[int, str] | None:
        """(indent, text) of the next line holding a node, past blanks and comments."""
        while self.at < len(self.lines):
            line = self.lines[self.at]
            text = line.strip()
            if text and not text.startswith("#"):
                if "\t" in line[: len(line) - len(line.lstrip())]:
                    raise self.error("tab in indentation")
                return len(line) - len(line.lstrip(" ")), text
            self.at += 1
        return None

    def node(self, indent: int) -> Any:
        _, text = self.peek() or (0, "")
        if text == "-" or text.startswith("- "):
            return self.sequence(indent)
        return self.mapping(indent)

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while (line := self.peek()) and line[0] == indent and line[1].startswith("- "):
            rest = line[1][2:].lstrip()
            column = indent + len(line[1]) - len(rest)
            if _split_key(rest) is not None:
                self.lines[self.at] = " " * column + rest  # "- key: v" opens a mapping
                items.append(self.mapping(column))
            else:
                self.at += 1
                items.append(self.value(rest, column))
        if line and line[0] > indent:
            raise self.error("unexpected indentation")
        return items

    def mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while (line := self.peek()) and line[0] == indent and not line[1].startswith("- "):
            split = _split_key(line[1])
            if split is None:
                raise self.error("expected 'key: value'")
            key, rest = split
            if key in result:
                raise self.error(f"duplicate key {key}")
            self.at += 1
            result[key] = self.value(rest, indent)
        if line and line[0] > indent:
            raise self.error("unexpected indentation")
        return result

    def value(self, text: str, indent: int) -> Any:
        if text.startswith(("|", ">")):
            return self.block_scalar(text, indent)
        if not _strip_comment(text):
            line = self.peek()
            # A sequence may sit at its key's own indentation.
            if line and (line[0] > indent or (line[0] == indent and line[1].startswith("- "))):
                return self.node(line[0])
            return None
        value = self.scalar(text)
        line = self.peek()
        if line and line[0] > indent:
            raise self.error("scalars over several lines are not supported")
        return value

    def scalar(self, text: str) -> Any:
        if text[0] in "\"'":
            quote = re.match(r""""(?:[^"\\]|\\.)*"|'(?:[^']|'')*'""", text)
            if quote is None or _strip_comment(text[quote.end() :]):
                raise self.error("unterminated or trailing text after a quoted scalar")
            inner = quote.group()
            return json.loads(inner) if text[0] == '"' else inner[1:-1].replace("''", "'")
        text = _strip_comment(text)
        if text == "{}":
            return {}
        if re.fullmatch(r"\[[^\[\]{}\"'#]*\]", text):  # [a, b]: plain scalars only
            return [item.strip() for item in text[1:-1].split(",") if item.strip()]
        if text[0] in "[{&*!%@`|>" or text == "-" or text.startswith("- "):
            raise self.error(f"not supported here: {text}")
        return text

    def block_scalar(self, header: str, indent: int) -> str:
        style, chomp = header[0], _strip_comment(header[1:])
        if chomp not in ("", "-"):
            raise self.error(f"block scalar header {header} is not supported")
        lines: list[str] = []
        content_indent = None
        while self.at < len(self.lines):
            line = self.lines[self.at]
            depth = len(line) - len(line.lstrip(" "))
            if line.strip() and depth <= indent:
                break
            if line.strip():
                content_indent = depth if content_indent is None else content_indent
                if depth < content_indent:
                    raise self.error("block scalar line less indented than its first")
            lines.append(line[content_indent or 0 :] if line.strip() else "")
            self.at += 1
        while lines and not lines[-1]:
            lines.pop()
        text = "\n".join(lines) if style == "|" else _fold(lines)
        return text if chomp == "-" else text + "\n"


def _split_key(text: str) -> tuple[str, str] | None:
    match = re.match(r"([A-Za-z_][\w.-]*):(?:\s+(.*))?$", text)
    return None if match is None else (match.group(1), match.group(2) or "")


def _strip_comment(text: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", text).strip()


def _fold(lines: list[str]) -> str:
    """Folding of a > block: the break between two plain lines becomes a space, and each
    blank line between them a break; next to a more-indented line the breaks stay."""
    text, previous, blanks = "", "", 0
    for line in lines:
        if not line:
            blanks += 1
            continue
        if previous:
            plain = not previous[0].isspace() and not line[0].isspace()
            text += "\n" * blanks if plain and blanks else " " if plain else "\n" * (blanks + 1)
        else:
            text += "\n" * blanks
        text += line
        previous, blanks = line, 0
    return text
