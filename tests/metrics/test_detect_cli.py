"""`pipeline-guard metrics detect` as a user runs it: the installed command, several files at once."""

from __future__ import annotations

import csv
import io
import math
import random
import subprocess
import sys
from pathlib import Path

from app.detection.cli_stream import detect_csv

CLI = [sys.executable, "-c", "import sys; from app.cli import main; sys.argv[0] = 'pipeline-guard'; main()"]
REPO = Path(__file__).resolve().parents[2]


def write_series(path: Path, n: int, seed: int, spike_at: int | None = None) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i in range(n):
            v = 10 + 2 * math.sin(i / 20) + rng.gauss(0, 0.5) + (40 if i == spike_at else 0)
            w.writerow([f"2014-04-{1 + i // 1440:02d} {i // 60 % 24:02d}:{i % 60:02d}:00", f"{v:.4f}"])
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "metrics", "detect", *args], check=False, capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_several_files_in_one_invocation_score_as_one_at_a_time(tmp_path):
    (tmp_path / "a").mkdir()
    inputs = [
        write_series(tmp_path / "a" / "first.csv", 1500, 1, spike_at=1200),
        write_series(tmp_path / "second.csv", 900, 2),
    ]
    out = tmp_path / "scored"
    proc = run_cli("--csv", str(inputs[0]), "--csv", str(inputs[1]), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "scored 1500 points" in proc.stdout and "scored 900 points" in proc.stdout
    for src in inputs:  # a fresh detector per file: the same as scoring each file alone
        alone = tmp_path / f"alone-{src.name}"
        detect_csv(src, alone)
        assert (out / src.name).read_text() == alone.read_text()
    scores = [float(r["anomaly_score"]) for r in csv.DictReader((out / "first.csv").open())]
    assert max(range(len(scores)), key=scores.__getitem__) == 1200


def test_one_file_writes_the_named_output(tmp_path):
    src = write_series(tmp_path / "in.csv", 400, 3)
    proc = run_cli("--csv", str(src), "--out", str(tmp_path / "out.csv"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 400 and set(rows[0]) == {"timestamp", "value", "anomaly_score"}


def test_detect_does_not_load_the_server():
    """Its start-up is the detector's: no web framework, database or migration modules."""
    code = (
        "import sys; from app.cli import main; sys.argv = ['pipeline-guard', 'metrics', 'detect', "
        "'--help']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'sqlalchemy', 'alembic', "
        "'uvicorn', 'httpx', 'asyncpg'}) + "
        "[m for m in sys.modules if m in ('app.platform.lifespan', 'app.main')]\n"
        "print('HEAVY', heavy)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert "--csv" in proc.stdout


def test_progress_is_reported_on_long_files(tmp_path):
    src = write_series(tmp_path / "long.csv", 10000, 4)
    progress = io.StringIO()
    assert detect_csv(src, tmp_path / "out.csv", progress=progress, every_s=0.0) == 10000
    lines = progress.getvalue().splitlines()
    assert lines and lines[0] == "long.csv: 4096/10000 points" and lines[-1] == "long.csv: 8192/10000 points"


def test_unreadable_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2014-04-01 00:00:00,1.0\n2014-04-01 00:01:00,oops\n")
    proc = run_cli("--csv", str(bad), "--out", str(tmp_path / "o.csv"))
    assert proc.returncode == 2 and f"{bad}:3" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.csv").exists()
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("when,v\n2014-04-01 00:00:00,1.0\n")
    proc = run_cli("--csv", str(nohead), "--out", str(tmp_path / "o2.csv"))
    assert proc.returncode == 2 and "'timestamp' and 'value'" in proc.stderr


def test_outputs_that_would_collide_are_refused_before_writing(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = write_series(tmp_path / "x" / "same.csv", 50, 5)
    b = write_series(tmp_path / "y" / "same.csv", 50, 6)
    out = tmp_path / "scored"
    proc = run_cli("--csv", str(a), "--csv", str(b), "--out", str(out))
    assert proc.returncode == 2 and "same.csv" in proc.stderr
    assert not out.exists()
