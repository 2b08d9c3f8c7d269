"""The serving process keeps glibc's heap small: its threads share two malloc arenas (unless the
operator chose), and the heap's free pages are handed back periodically. Checked on real processes
and real glibc: the arenas a process made are read from its memory map."""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import running_guard
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
HEAP_SPAN = 64 << 20  # a glibc arena other than the main one lives in heaps of this size and alignment

pytestmark = pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="glibc's malloc only")


def arena_heaps(pid: int) -> int:
    """Heaps of glibc's non-main arenas in the process: anonymous mappings that together cover exactly
    one aligned 64 MiB span, the used part first (read-write) and the reserve after it."""
    maps = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) == 5:  # anonymous
            start, end = (int(x, 16) for x in fields[0].split("-"))
            maps.append((start, end, fields[1]))
    heaps = 0
    for i, (start, end, perms) in enumerate(maps):
        if start % HEAP_SPAN or not perms.startswith("rw"):
            continue
        if end == start + HEAP_SPAN:
            heaps += 1
        elif i + 1 < len(maps) and maps[i + 1][0] == end and maps[i + 1][1] == start + HEAP_SPAN:
            heaps += maps[i + 1][2].startswith("---")
    return heaps


THREADS_ALLOCATE = """
import sys, threading
from app.platform import heap
print(heap.limit_arenas(), flush=True)
def work():
    kept = [bytearray(4096) for _ in range(200)]  # above pymalloc's sizes: glibc's malloc
    barrier.wait()
barrier = threading.Barrier(8)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("ready", flush=True)
sys.stdin.readline()
"""


def run_threads(env: dict[str, str]) -> tuple[str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", THREADS_ALLOCATE],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        limited = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "ready"
        return limited, arena_heaps(proc.pid)
    finally:
        proc.communicate("\n", timeout=10)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX" and not k.startswith("PIPELINE_")}
    env.pop("GLIBC_TUNABLES", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_threads_share_two_arenas():
    limited, heaps = run_threads(clean_env())
    assert limited == "True"
    assert heaps <= 1  # the main arena is not one of these heaps: two arenas in all


def test_the_operators_arena_count_is_left_alone():
    limited, heaps = run_threads({**clean_env(), "MALLOC_ARENA_MAX": "4"})
    assert limited == "False"
    assert 2 <= heaps <= 3  # glibc applied the operator's 4 (the main arena and three heaps)


def test_serve_threads_share_two_arenas(tmp_path):
    """`pipeline-guard serve` on SQLite: every pooled connection's driver thread allocates, yet the
    process has at most one arena besides the main one."""
    port = free_port()
    config = tmp_path / "guard.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": "test",
                "database_url": f"sqlite+aiosqlite:///{tmp_path}/guard.db",
                "data_dir": str(tmp_path / "var"),
                "security": {"secret_key": "s" * 48, "rate_limiting": {"enabled": False}},
            }
        )
    )
    env = {**clean_env(), "PIPELINE_ADMIN_PASSWORD": "heap-test-admin-password-0123"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer"
            time.sleep(0.2)

        def login() -> int:
            return httpx.post(
                f"{base}/api/v1/auth/token",
                data={"username": "admin", "password": env["PIPELINE_ADMIN_PASSWORD"]},
                timeout=30,
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: login(), range(16))) == {200}
        assert arena_heaps(proc.pid) <= 1
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


async def test_the_heap_is_trimmed_while_serving(db_url, tmp_path, monkeypatch):
    from app.platform import heap
    from tests.conftest import make_settings

    real = heap.glibc()
    trims: list[float] = []

    class Counting:
        def malloc_trim(self, pad: int) -> int:
            trims.append(time.monotonic())
            return real.malloc_trim(pad)

    monkeypatch.setattr(heap, "glibc", Counting)
    monkeypatch.setattr(heap, "TRIM_EVERY_S", 0.05)
    async with running_guard(make_settings(db_url, tmp_path)):
        async with asyncio.timeout(30):
            while len(trims) < 3:
                await asyncio.sleep(0.05)
    stopped = len(trims)
    await asyncio.sleep(0.3)
    assert len(trims) == stopped  # no trim once the guard stopped
