"""`pipeline-guard metrics`: local commands here; HTTP commands (record, query, summary, analyze,
baselines) are added to the same ``app`` by the CLI client module — add each as one function
decorated with ``@app.command(...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Metrics: record, query, summarise, detect anomalies.", no_args_is_help=True)


@app.command("detect")
def detect(
    csv_path: Annotated[Path, typer.Option("--csv", exists=True, dir_okay=False, readable=True,
                                           help="input CSV with timestamp,value columns")],
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="output CSV: timestamp,value,anomaly_score")],
) -> None:
    """Stream a CSV through exactly the detector the service uses (one point at a time, no look-ahead)."""
    from app.detection.cli_stream import detect_csv

    rows = detect_csv(csv_path, out)
    typer.echo(f"scored {rows} points -> {out}")
