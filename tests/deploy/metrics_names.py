"""The series botter exports, the metric names a PromQL expression reads, and promtool.

Alerts and dashboards may only read metrics defined in botter.metrics: a metric renamed
there must break the test of every file that still uses the old name.
"""

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import botter.metrics

PROMTOOL_PACKAGE: Final = "prometheus"
# The series each kind of metric family puts in the exposition.
_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
_STRING: Final = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_MATCHERS: Final = re.compile(r"\{[^{}]*\}")
_RANGE: Final = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST: Final = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)"
)
_GRAFANA_VARIABLE: Final = re.compile(r"\$\{?\w+\}?")
_NUMBER: Final = re.compile(r"(?<![\w:])(?:0[xX][0-9a-fA-F]+|\d[\w.]*)")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_:][\w:]*")
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan"}
)


@functools.cache
def exported_series() -> frozenset[str]:
    """Every series name the metrics defined in botter.metrics can put in /metrics, read
    from the default registry (where defining them registered them)."""
    defined = {
        family.name
        for collector in vars(botter.metrics).values()
        if isinstance(collector, MetricWrapperBase)
        for family in collector.describe()
    }
    series: set[str] = set()
    for family in REGISTRY.collect():
        if family.name in defined:
            series.update(family.name + suffix for suffix in _SUFFIXES[family.type])
            defined.discard(family.name)
    assert not defined, f"defined in botter.metrics but not registered: {sorted(defined)}"
    return frozenset(series)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's $variables allowed).

    A selector by `__name__` cannot be checked, so it comes back as the name `__name__`.
    """
    names = {"__name__"} if "__name__" in expr else set()
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        called = text[match.end() :].lstrip().startswith("(")
        if not called and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def unknown_metrics(expr: str, allowed: frozenset[str] = frozenset()) -> set[str]:
    """The names in `expr` that botter does not export (and `allowed` does not list)."""
    return metric_names(expr) - exported_series() - allowed


def promtool() -> str:
    """The promtool binary; a missing one fails the test with one line saying what to do."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            f"promtool is not installed: install Debian's package {PROMTOOL_PACKAGE}"
            f" (apt-get install --no-install-recommends {PROMTOOL_PACKAGE})",
            pytrace=False,
        )
    return path


def run_promtool(*args: str | Path) -> str:
    """Run promtool, assert it succeeded, and return what it printed."""
    done = subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    return report
