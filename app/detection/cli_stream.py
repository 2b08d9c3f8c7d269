"""Stream NAB-style ``timestamp,value`` CSVs through the service's detector (``metrics detect``).

Kept light on purpose: it imports the detector and the standard library only, so that scoring a
file costs what the detector costs and not the service's start-up. Each file gets a fresh detector
(a file is one series), and progress on long files goes to stderr at most about once a second.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from app.detection.anomaly import AnomalyDetector, default_detector

PROGRESS_EVERY_S = 1.0


class CsvInputError(ValueError):
    """A row or header that cannot be read: says which file and line."""


def parse_timestamp(text: str) -> datetime:
    """NAB timestamps (``2014-04-01 00:00:00[.ffffff]``) and ISO 8601; naive means UTC."""
    ts = datetime.fromisoformat(text.strip())
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _columns(header: list[str] | None, path: Path) -> tuple[int, int]:
    names = [h.strip().lower() for h in header or []]
    try:
        return names.index("timestamp"), names.index("value")
    except ValueError:
        raise CsvInputError(f"{path}: the header must name 'timestamp' and 'value' columns") from None


def detect_csv(
    in_path: str | Path,
    out_path: str | Path,
    detector_factory: Callable[[], AnomalyDetector] = default_detector,
    progress: TextIO | None = None,
    every_s: float = PROGRESS_EVERY_S,
) -> int:
    """Write ``timestamp,value,anomaly_score`` for every input row; returns the number of rows.

    ``progress``: where to report ``name: done/total points`` on files that take longer than
    ``every_s`` seconds (None: silent)."""
    in_path, out_path = Path(in_path), Path(out_path)
    total = None
    if progress is not None:
        with in_path.open("rb") as fh:
            total = max(sum(1 for _ in fh) - 1, 0)
    detector = detector_factory()
    score = detector.score
    rows = 0
    next_report = time.monotonic() + every_s
    with in_path.open(newline="") as src, out_path.open("w", newline="") as dst:
        reader = csv.reader(src)
        it, iv = _columns(next(reader, None), in_path)
        writer = csv.writer(dst)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        out_rows: list[list[str]] = []
        for row in reader:
            if not row:
                continue
            try:
                ts_text, value_text = row[it], row[iv]
                s = score(parse_timestamp(ts_text), float(value_text))
            except (IndexError, ValueError) as exc:
                raise CsvInputError(f"{in_path}:{reader.line_num}: cannot read row {row!r} ({exc})") from None
            out_rows.append([ts_text, value_text, f"{s:.6f}"])
            rows += 1
            if len(out_rows) >= 4096:  # write in batches; check the clock as rarely
                writer.writerows(out_rows)
                out_rows.clear()
                if progress is not None and time.monotonic() >= next_report:
                    print(f"{in_path.name}: {rows}/{total} points", file=progress, flush=True)
                    next_report = time.monotonic() + every_s
        writer.writerows(out_rows)
    return rows


def output_paths(inputs: Iterable[Path], out: Path) -> list[Path]:
    """One input: ``out`` is the output file. Several: ``out`` is a directory (created if need be)
    and each output keeps its input's file name, which must then be unique."""
    inputs = list(inputs)
    if len(inputs) == 1 and not out.is_dir():
        return [out]
    names = [p.name for p in inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CsvInputError(
            f"several inputs are named {', '.join(dupes)}: their outputs in {out} would overwrite each other"
        )
    if out.exists() and not out.is_dir():
        raise CsvInputError(f"{out} is a file: with several inputs --out must be a directory")
    return [out / n for n in names]


def detect_files(
    inputs: list[Path], out: Path, progress: TextIO | None = sys.stderr, echo: Callable[[str], None] = print
) -> int:
    """Score every input (one series each) in this one process; returns the total of points."""
    targets = output_paths(inputs, out)
    if len(inputs) > 1:
        out.mkdir(parents=True, exist_ok=True)
    total = 0
    for src, dst in zip(inputs, targets, strict=True):
        t0 = time.perf_counter()
        try:
            n = detect_csv(src, dst, progress=progress)
        except CsvInputError:
            dst.unlink(missing_ok=True)  # no half-scored output left behind
            raise
        us = 1e6 * (time.perf_counter() - t0) / max(n, 1)
        echo(f"scored {n} points -> {dst} ({us:.1f} µs per point)")
        total += n
    return total
