"""`pipeline-guard metrics record|query|summary|latest|baselines|analyze` (over HTTP).

(``metrics detect`` lives with the detection code; the integrator merges the two sub-apps.)
"""

from typing import Annotated, Any

import typer
from rich.progress import Progress

from app.cli.http_common import Connection, err_console, http_command, items_of, output, parse_labels, pick

app = typer.Typer(
    help="Metrics: push, query, summarise, analyse (talks to a running guard).", no_args_is_help=True
)

POINT_COLUMNS = [
    ("time", ("timestamp", "ts")),
    ("component", ("component",)),
    ("metric", ("metric_name", "name")),
    ("value", ("value",)),
    ("labels", ("labels",)),
]
SUMMARY_KEYS = ("count", "min", "max", "mean", "avg", "p50", "p90", "p95", "p99", "stddev", "last")
BASELINE_COLUMNS = [
    ("component", ("component",)),
    ("metric", ("metric_name",)),
    ("labels", ("labels",)),
    ("rule", ("rule_name",)),
    ("median", ("baseline.median",)),
    ("spread", ("baseline.spread",)),
    ("p05", ("baseline.p05",)),
    ("p95", ("baseline.p95",)),
    ("points", ("baseline.count",)),
    ("warmed up", ("baseline.warmed_up",)),
    ("firing", ("firing",)),
    ("last point", ("last_ts",)),
]


@app.command("record")
@http_command
def record(
    conn: Connection,
    component: str,
    metric_name: str,
    value: float,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value; repeat")] = None,
) -> None:
    """Push one metric point."""
    point = {
        "component": component,
        "metric_name": metric_name,
        "value": value,
        "labels": parse_labels(label),
    }
    body = conn.call("request", "POST", "/api/v1/metrics", json=point)
    output(conn, body) if conn.json_output else typer.echo(f"recorded {component}/{metric_name}={value:g}")


@app.command("query")
@http_command
def query(
    conn: Connection,
    component: Annotated[str | None, typer.Option()] = None,
    metric: Annotated[str | None, typer.Option("--metric", "-m")] = None,
    start: Annotated[str | None, typer.Option(help="ISO time")] = None,
    end: Annotated[str | None, typer.Option(help="ISO time")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value; repeat")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
) -> None:
    """Metric points, newest first."""
    body = conn.call("get_metrics", component, metric, start, end, parse_labels(label), limit)
    output(conn, body, POINT_COLUMNS)


@app.command("summary")
@http_command
def summary(
    conn: Connection,
    component: str,
    metric_name: str,
    since: Annotated[str | None, typer.Option(help="window like 1h, 24h")] = "1h",
    start: Annotated[str | None, typer.Option()] = None,
    end: Annotated[str | None, typer.Option()] = None,
) -> None:
    """count/min/max/mean/percentiles of one series."""
    body = conn.call(
        "get_metric_summary", component, metric_name, since=None if start else since, start=start, end=end
    )
    output(conn, body)


@app.command("latest")
@http_command
def latest(
    conn: Connection,
    component: Annotated[str | None, typer.Argument()] = None,
    name: Annotated[list[str] | None, typer.Option("--name", "-n", help="metric name; repeat")] = None,
) -> None:
    """The latest value of each series."""
    output(conn, conn.call("get_latest_metrics", component, name), POINT_COLUMNS)


@app.command("baselines")
@http_command
def baselines(
    conn: Connection,
    component: Annotated[str | None, typer.Option()] = None,
    metric: Annotated[str | None, typer.Option("--metric", "-m")] = None,
) -> None:
    """The learned baseline of each series (the seed's --baselines)."""
    output(conn, conn.call("get_baselines", component, metric), BASELINE_COLUMNS)


@app.command("analyze")
@http_command
def analyze(
    conn: Connection, component: str, since: Annotated[str, typer.Option(help="window like 1h, 24h")] = "1h"
) -> None:
    """Each series of COMPONENT: latest value, summary over the window, and its baseline (the seed's
    --analyze)."""
    rows: list[dict[str, Any]] = []
    with conn.client() as client:
        series = items_of(client.get_latest_metrics(component))
        try:
            known = {pick(b, "metric_name", "name"): b for b in items_of(client.get_baselines(component))}
        except Exception:  # noqa: BLE001 - a guard without baselines still gets the summaries
            known = {}
        with Progress(console=err_console.now(), transient=True) as progress:
            task = progress.add_task(f"analysing {component}", total=len(series))
            for point in series:
                name = pick(point, "metric_name", "name")
                stats = client.get_metric_summary(component, name, since=since) or {}
                baseline = known.get(name) or {}
                mean, spread = pick(baseline, "baseline.median"), pick(baseline, "baseline.spread")
                value = pick(point, "value")
                score = None
                numbers = isinstance(mean, int | float) and isinstance(spread, int | float)
                if numbers and spread > 0 and value is not None:
                    score = round(abs(float(value) - mean) / spread, 2)
                rows.append(
                    {
                        "metric_name": name,
                        "latest": value,
                        **{k: stats.get(k) for k in SUMMARY_KEYS if k in stats},
                        "baseline_mean": mean,
                        "z": score,
                    }
                )
                progress.advance(task)
    columns = [
        ("metric", ("metric_name",)),
        ("latest", ("latest",)),
        ("count", ("count",)),
        ("mean", ("mean", "avg")),
        ("p95", ("p95",)),
        ("max", ("max",)),
        ("baseline median", ("baseline_mean",)),
        ("z", ("z",)),
    ]
    output(
        conn, {"component": component, "since": since, "series": rows} if conn.json_output else rows, columns
    )
