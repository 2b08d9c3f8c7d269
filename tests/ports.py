"""Free loopback ports for the servers the tests start (guards, targets, receivers, proxies).

Binding port 0, reading the port and closing the socket is racy: the port goes back to the kernel's
ephemeral range, where any other process's outgoing connection or port-0 server may take it before the
test's server binds it, and a workload restarted on its port may find it taken meanwhile. A guard that
lost its port exits, and the test then talks to whatever took it. So the ports handed out here lie below
the ephemeral range, each test process (xdist worker) has its own slice of them, and within a process a
port is handed out again only after the whole slice has been used.
"""

from __future__ import annotations

import os
import random
import socket
import threading

_LOWEST = 10000
_lock = threading.Lock()
_next: int | None = None


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _slice() -> tuple[int, int]:
    """This process's ports: [low, high)."""
    top = max(_ephemeral_low(), _LOWEST + 2000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (top - _LOWEST) // max(count, 1)
    low = _LOWEST + (index % max(count, 1)) * width
    return low, low + width


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody holds now, and that no other test process is handed."""
    global _next
    low, high = _slice()
    with _lock:
        if _next is None or not low <= _next < high:
            # A random start: two suites running side by side on one machine rarely walk in step.
            _next = random.randrange(low, high)
        for _ in range(high - low):
            port = _next
            _next = low if _next + 1 >= high else _next + 1
            if _bindable(port):
                return port
    raise RuntimeError(f"no free port in {low}-{high}")
