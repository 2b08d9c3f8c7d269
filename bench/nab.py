"""NAB harness: run the detector over the NAB subset and score it (not a test).

    .venv/bin/python bench/nab.py [--nab-dir DIR]     # or PIPELINE_NAB_DIR=DIR

Prints, per profile, the normalised NAB score and the corpus-wide threshold chosen for it (an
in-sample figure: bench/nab_cv.py gives the held-out one) and the cost in µs per point, for the
service's detector, the alternatives it was measured against (bench/nab_designs.py) and a
windowed-Gaussian baseline (NAB's published 39.6 on the full corpus), all in the same run, because
absolute timings on a shared machine are noisy and the ratio is what we compare.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from nab_designs import designs  # noqa: E402  needs the sys.path entries above
from nab_scoring import PROFILES, score_corpus  # noqa: E402  needs the sys.path entries above


def _default_nab_dir() -> Path:
    """``shared/nab`` beside the checkout (main, or CI's clone), or beside its parent (a worktree)."""
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "nab" / "data").is_dir():
            return base / "shared" / "nab"
    return REPO.parent / "shared" / "nab"


DEFAULT_NAB_DIR = _default_nab_dir()


def parse_ts(text: str) -> float:
    text = text.strip()
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()


def load_corpus(nab_dir: Path) -> list[tuple[str, list[float], list[float], list[tuple[int, int]]]]:
    """Per file: (name, timestamps, values, inclusive window row spans)."""
    labels = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    corpus = []
    for path in sorted((nab_dir / "data").glob("*/*.csv")):
        name = f"{path.parent.name}/{path.name}"
        ts: list[float] = []
        vals: list[float] = []
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                ts.append(parse_ts(row["timestamp"]))
                vals.append(float(row["value"]))
        spans = []
        for start, end in labels.get(name, []):
            s, e = parse_ts(start), parse_ts(end)
            idx = [i for i, t in enumerate(ts) if s <= t <= e]
            if idx:
                spans.append((idx[0], idx[-1]))
        corpus.append((name, ts, vals, spans))
    return corpus


class WindowedGaussian:
    """Baseline like NAB's windowedGaussian: rolling mean/std z-score -> two-sided tail probability."""

    def __init__(self, window: int = 6400) -> None:
        self.buf: deque[float] = deque()
        self.window = window
        self.s = 0.0
        self.s2 = 0.0

    def score(self, _ts: float, x: float) -> float:
        n = len(self.buf)
        out = 0.0
        if n >= 2:
            mean = self.s / n
            var = max(self.s2 / n - mean * mean, 0.0)
            if var > 0.0:
                z = abs(x - mean) / math.sqrt(var)
                out = 1.0 - math.erfc(z / math.sqrt(2.0))  # 1 - two-sided tail
        self.buf.append(x)
        self.s += x
        self.s2 += x * x
        if n + 1 > self.window:
            old = self.buf.popleft()
            self.s -= old
            self.s2 -= old * old
        return out


def run(corpus, factory: Callable[[], object]) -> tuple[dict, float, dict[str, list[float]]]:
    series = []
    per_file: dict[str, list[float]] = {}
    elapsed = 0.0
    points = 0
    for name, ts, vals, spans in corpus:
        det = factory()
        score = det.score
        t0 = time.perf_counter()
        scores = [score(t, v) for t, v in zip(ts, vals, strict=True)]
        elapsed += time.perf_counter() - t0
        points += len(vals)
        series.append((scores, spans))
        per_file[name] = scores
    return score_corpus(series), 1e6 * elapsed / points, per_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nab-dir", type=Path, default=Path(os.environ.get("PIPELINE_NAB_DIR", DEFAULT_NAB_DIR)))
    ap.add_argument("--per-file", action="store_true", help="also print each file's detections")
    args = ap.parse_args(argv)
    if not (args.nab_dir / "data").is_dir():
        print(f"NAB data not found under {args.nab_dir}", file=sys.stderr)
        return 2
    corpus = load_corpus(args.nab_dir)
    n_points = sum(len(c[2]) for c in corpus)
    print(
        f"NAB subset: {len(corpus)} files, {n_points} points, "
        f"{sum(len(c[3]) for c in corpus)} windows ({args.nab_dir})"
    )
    results = [(label, *run(corpus, make)) for label, make in designs(WindowedGaussian)]
    print(f"{'design':<34} {'profile':<14} {'score':>6} {'threshold':>10} {'TP/FP/FN':>10}")
    for label, res, _us, _ in results:
        for p in PROFILES:
            r = res[p]
            print(
                f"{label if p == 'standard' else '':<34} {p:<14} {r.score:6.1f} {r.threshold:10.4f} "
                f"{f'{r.tp}/{r.fp}/{r.fn}':>10}"
            )
    base_us = results[-1][2]
    print(
        "µs per point: " + ", ".join(f"{label} {us:.2f} ({us / base_us:.1f}x)" for label, _, us, _ in results)
    )
    ours, per_file = results[0][1], results[0][3]
    if args.per_file:
        thr = ours["standard"].threshold
        for name, _ts, _vals, spans in corpus:
            hits = [i for i, s in enumerate(per_file[name]) if s >= thr]
            print(f"{name}: windows={spans} detections={hits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
