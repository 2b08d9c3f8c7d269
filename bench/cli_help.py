"""CPU time of ``pipeline-guard --help`` beside ``python -c "import httpx"`` (the floor for any client
command), measured in the same run as child-process CPU (user + system), median of N runs each.

    .venv/bin/python bench/cli_help.py [-n 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "100"}
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5)
    args = parser.parse_args()
    cases = {
        'python -c "import httpx"': [sys.executable, "-c", "import httpx"],
        "pipeline-guard --help": [sys.executable, "-m", "app", "--help"],
        "pipeline-guard components --help": [sys.executable, "-m", "app", "components", "--help"],
        "pipeline-guard serve --help": [sys.executable, "-m", "app", "serve", "--help"],
    }
    results = {name: [] for name in cases}
    for _ in range(args.n):  # interleaved, so a burst of load hits every case alike
        for name, argv in cases.items():
            results[name].append(child_cpu(argv))
    baseline = statistics.median(results['python -c "import httpx"'])
    print(f"load average {os.getloadavg()[0]:.1f}; median CPU of {args.n} runs")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:36s} {median * 1000:7.0f} ms   x{median / baseline:.2f} of import httpx")


if __name__ == "__main__":
    main()
