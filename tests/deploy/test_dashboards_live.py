"""Every Grafana panel's PromQL (and every template variable's label query) returns data from
a real Prometheus scraping a running daemon that diagnosed windows and dead-lettered one.

Shares the session's stack with test_alerting_e2e.py (mosquitto, daemon, Prometheus).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.test_alerting_e2e import Stack, release_stack, shared_stack

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$")


def substitute(expr: str) -> str:
    """Grafana's variables as match-everything regexes."""
    return re.sub(r"\$\{?(site|asset|bearing)\}?", ".*", expr)


def panels(board: dict) -> list[dict]:
    found = []
    for panel in board.get("panels", []):
        found.append(panel)
        found += panels(panel)  # rows nest their panels
    return found


def panel_queries() -> list[tuple[str, str, str]]:
    return [(path.stem, panel.get("title", "?"), target["expr"])
            for path in DASHBOARDS for panel in panels(json.loads(path.read_text()))
            for target in panel.get("targets", []) if target.get("expr")]


def variable_queries() -> list[tuple[str, str, str]]:
    return [(path.stem, var["name"], var["query"] if isinstance(var["query"], str)
             else var["query"].get("query", ""))
            for path in DASHBOARDS
            for var in json.loads(path.read_text()).get("templating", {}).get("list", [])
            if var.get("type") == "query"]


@pytest.fixture(scope="module")
def stack(request) -> Iterator[Stack]:
    yield shared_stack(request)
    release_stack(request)


@pytest.fixture(scope="module")
def every_series(stack):
    """A fault on one bearing too, so that the fault panels have something to show."""
    stack.inject("inner_race", 3, first=0, where=("yard1", "crane8", "slew", "s8"))
    stack.prometheus.wait_for('slewguard_bearing_state{asset="crane8",state="inner_race"} == 1')
    return stack


def test_dashboards_have_queries():
    assert len(DASHBOARDS) == 3 and len(panel_queries()) >= 20
    assert {name for _, name, _ in variable_queries()} >= {"site", "asset", "bearing"}


@pytest.mark.services
@pytest.mark.parametrize("board, title, expr", panel_queries(),
                         ids=[f"{b}:{t}:{i}" for i, (b, t, _) in enumerate(panel_queries())])
def test_panel_query_returns_data(every_series, board, title, expr):
    result = every_series.prometheus.wait_for(substitute(expr), timeout_s=30)
    assert result and all("value" in r for r in result), f"{board}/{title}: {expr}"


@pytest.mark.services
@pytest.mark.parametrize("board, name, query", variable_queries())
def test_template_variable_has_values(every_series, board, name, query):
    parsed = LABEL_VALUES.match(substitute(query))
    assert parsed, f"{board} variable {name}: {query!r} is not label_values(...)"
    params = {"match[]": parsed["match"]} if parsed["match"] else {}
    url = (f"{every_series.prometheus.url}/api/v1/label/{parsed['label']}/values?"
           + urllib.parse.urlencode(params))
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(url, timeout=5) as response:
            values = json.load(response)["data"]
        if values or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"site": "yard1", "asset": "crane1", "bearing": "slew"}[parsed["label"]] in values
