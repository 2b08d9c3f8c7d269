"""The tests' own port picker: test processes never share a port, and none comes from the ephemeral range."""

from __future__ import annotations

import socket

from tests import ports


def test_workers_get_disjoint_slices_below_the_ephemeral_range(monkeypatch):
    slices = []
    for index in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
        slices.append(ports._slice())
    for (low, high), (next_low, _) in zip(slices, slices[1:], strict=False):
        assert low < high <= next_low
    assert slices[-1][1] <= ports._ephemeral_low()


def test_a_held_port_is_skipped():
    port = ports.free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        ports._next = port  # the picker's next candidate is the port just taken
        assert ports.free_port() != port


def test_ports_are_not_handed_out_twice_within_a_slice():
    handed = [ports.free_port() for _ in range(200)]
    assert len(set(handed)) == len(handed)
    low, high = ports._slice()
    assert all(low <= p < high for p in handed)
