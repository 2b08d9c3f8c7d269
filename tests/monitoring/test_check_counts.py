"""`pipeline_guard_checks_total` keeps one count per component and outcome, not a Counter child, and a
scrape shows exactly what prometheus_client's Counter showed (values, `_created`, order)."""

from __future__ import annotations

import re
import tracemalloc
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from app.checks.base import Outcome
from app.monitoring.probe_metrics import ProbeMetrics
from app.observability.metrics import GuardMetrics


def check_lines(text: bytes) -> list[str]:
    lines = [line for line in text.decode().splitlines() if "_checks_" in line or "_checks " in line]
    # Creation times differ by construction (each side stamps its own); their presence and order count.
    return [re.sub(r"(_created\{[^}]*\}) \S+", r"\1 <time>", line) for line in lines]


@pytest.mark.parametrize("created", [True, False])
def test_a_scrape_shows_what_the_counter_showed(monkeypatch, created):
    monkeypatch.setattr(prometheus_metrics, "_use_created", created)
    before = CollectorRegistry(auto_describe=True)
    counter = Counter("pipeline_guard_checks_total", "Checks run.", ["component", "outcome"], registry=before)
    metrics = GuardMetrics()
    probe_metrics = ProbeMetrics(metrics)
    entries = {name: SimpleNamespace(name=name, kind="http", counters=None) for name in ("a", "b", 'c"q\\n')}
    steps = [
        ("a", Outcome.UP, 3),
        ("b", Outcome.DOWN, 1),
        ('c"q\\n', Outcome.UP, 2),
        ("a", Outcome.DOWN, 1),
        ("b", None, 0),  # deleted
        ("b", Outcome.UP, 4),  # created again: counted from zero, listed last
        ("a", Outcome.UP, 2),
    ]
    for name, outcome, n in steps:
        if outcome is None:
            for labels in [k for k in counter._metrics if k[0] == name]:
                counter.remove(*labels)
            probe_metrics.forget(name)
            entries[name].counters = None
            continue
        counter.labels(name, outcome.value).inc(n)
        for _ in range(n):
            probe_metrics.count(entries[name], outcome, None)
        probe_metrics.publish_counts()
    for generate in (generate_latest, generate_openmetrics):
        assert check_lines(generate(metrics.registry)) == check_lines(generate(before))
    text = generate_latest(metrics.registry).decode()
    assert 'pipeline_guard_checks_total{component="a",outcome="up"} 5.0' in text
    assert 'pipeline_guard_checks_total{component="b",outcome="down"}' not in text


def test_a_components_count_costs_a_map_entry_not_a_counter_child():
    metrics = GuardMetrics()
    probe_metrics = ProbeMetrics(metrics)
    entries = [SimpleNamespace(name=f"svc-{i:05d}", kind="http", counters=None) for i in range(2000)]
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for entry in entries:
            probe_metrics.count(entry, Outcome.UP, None)
        probe_metrics.publish_counts()
        per_component = (tracemalloc.get_traced_memory()[0] - start) / len(entries)
    finally:
        tracemalloc.stop()
    # A Counter child took about 690 bytes beside the key and its per-component cache.
    assert per_component < 600, per_component
