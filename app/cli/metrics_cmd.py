"""`pipeline-guard metrics`: local commands here; HTTP commands (record, query, summary, analyze,
baselines) are added to the same ``app`` by the CLI client module — add each as one function
decorated with ``@app.command(...)``.

``metrics detect`` is also reachable without building the whole CLI (``detect_app``, see
``app.cli.main``): it imports the detector and typer only, so its start-up is paid once per
invocation, not the server's modules, and it takes many files in one go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Metrics: record, query, summarise, detect anomalies.", no_args_is_help=True)


@app.command("detect")
def detect(
    csv_paths: Annotated[
        list[Path],
        typer.Option(
            "--csv",
            exists=True,
            dir_okay=False,
            readable=True,
            help="input CSV with timestamp,value columns (one series); repeat for several files",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="output CSV (timestamp,value,anomaly_score) for one input; for several "
            "inputs a directory, each output named after its input",
        ),
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress on stderr")] = False,
) -> None:
    """Stream CSVs through exactly the detector the service uses (one point at a time, no
    look-ahead, a fresh detector per file); progress on long files goes to stderr."""
    import sys

    from app.detection.cli_stream import CsvInputError, detect_files

    try:
        detect_files(csv_paths, out, progress=None if quiet else sys.stderr, echo=typer.echo)
    except CsvInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def detect_app() -> typer.Typer:
    """``metrics detect`` alone, for ``app.cli.main``'s fast path."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command()(detect)
    return single
