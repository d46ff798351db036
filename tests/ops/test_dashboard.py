"""The Grafana dashboard in docs/grafana is the one bench/dashboard.py defines, and its queries name real metrics."""

from __future__ import annotations

import importlib.util
import re
import sys
from types import ModuleType

from tests.conftest import ROOT


def dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ripple_bench_dashboard", ROOT / "bench" / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboard_is_the_generated_one() -> None:
    dashboard = dashboard_module()
    assert (ROOT / "docs" / "grafana" / "ripple-dashboard.json").read_text() == dashboard.dashboard_text(), (
        "run: python bench/dashboard.py --json"
    )
    assert (ROOT / "docs" / "grafana" / "dashboard.png").stat().st_size > 10_000


def test_every_query_names_a_documented_metric() -> None:
    documented = (ROOT / "docs" / "operations.md").read_text()
    for panel in dashboard_module().PANELS:
        for query in panel.queries:
            for name in re.findall(r"\b(ripple_\w+?)(?:_bucket)?\b(?=[\[{)\s]|$)", query.expr):
                assert f"`{name}" in documented, (panel.title, name)


def test_the_evaluator_interpolates_quantiles_and_rates() -> None:
    dashboard = dashboard_module()
    scrapes = dashboard.Scrapes()
    for t, (le1, inf) in enumerate([(0, 0), (10, 10), (20, 40)]):
        scrapes.add(float(t), f'# TYPE h histogram\nh_bucket{{le="1.0"}} {le1}\nh_bucket{{le="+Inf"}} {inf}\n'
                              f"h_count {inf}\nh_sum 0\n")
    rates = dashboard.evaluate('rate(h_bucket{le="+Inf"}[$__rate_interval])', scrapes, 1.0)
    assert rates == {frozenset({("le", "+Inf")}): [(1.0, 10.0), (2.0, 30.0)]}
    p50 = dashboard.evaluate("histogram_quantile(0.5, sum by (le) (rate(h_bucket[$__rate_interval])))", scrapes, 1.0)
    # at t=2: 10 of 30 observations per second are <= 1.0, the median is past the last finite bound: that bound
    assert p50[frozenset()] == [(1.0, 0.5), (2.0, 1.0)]
