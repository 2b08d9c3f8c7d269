"""An example batch pipeline that reports to Pipeline Guard with the client SDK.

Run a guard (`make run`), create a token or use the admin login, then:

    PIPELINE_URL=http://127.0.0.1:8080 PIPELINE_USERNAME=admin PIPELINE_PASSWORD=... \
        .venv/bin/python examples/pipeline_job.py --rows 5000 [--fail]

What it shows:
- ``guard.job(...)`` reports start, then success or failure with the duration (heartbeats);
- ``record_metric`` is buffered and sent in batches (and flushed when the job ends);
- the pipeline keeps running when the guard is down: reporting errors are only logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time

from app.client import GuardClient

COMPONENT = "example-etl"


def extract(rows: int) -> list[dict]:
    return [{"id": i, "amount": random.gauss(100, 15)} for i in range(rows)]


def transform(records: list[dict], fail: bool) -> list[dict]:
    if fail:
        raise RuntimeError("upstream schema changed: column 'amount' missing")
    return [r for r in records if r["amount"] > 0]


def load(records: list[dict], guard: GuardClient) -> None:
    for start in range(0, len(records), 1000):
        chunk = records[start:start + 1000]
        time.sleep(0.01)  # pretend to write somewhere
        guard.record_metric(COMPONENT, "rows_loaded", len(chunk), labels={"stage": "load"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--fail", action="store_true", help="make the transform step fail")
    parser.add_argument("--url", default=os.environ.get("PIPELINE_URL", "http://127.0.0.1:8080"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with GuardClient(args.url, os.environ.get("PIPELINE_TOKEN"), username=os.environ.get("PIPELINE_USERNAME"),
                     password=os.environ.get("PIPELINE_PASSWORD"), batch_size=100, flush_interval=2.0) as guard:
        # Register the component once (a heartbeat check expecting a run every hour); 409 if it exists.
        guard.create_component({"name": COMPONENT, "description": "example batch pipeline",
                                "check": {"kind": "heartbeat", "period": "1h", "grace": "10m"}})
        with guard.job(COMPONENT) as run:
            started = time.monotonic()
            records = extract(args.rows)
            guard.record_metric(COMPONENT, "rows_extracted", len(records))
            cleaned = transform(records, args.fail)
            load(cleaned, guard)
            guard.record_metric(COMPONENT, "duration_seconds", time.monotonic() - started)
            guard.record_metric(COMPONENT, "dropped_rows", len(records) - len(cleaned))
            run.message = f"loaded {len(cleaned)} rows"
        logging.info("done: %s", run.message)


if __name__ == "__main__":
    main()
