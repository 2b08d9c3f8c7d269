"""Password hashing (argon2, ~0.1 s of CPU by design) never runs on the event loop: a handful of
logins at once, from anyone, used to hold every other request, ``/health`` and the probes for as
long (measured: ``/health`` median 0.2-0.4 s, p95 up to 2 s during 8 logins at a time). Logins,
user creation and password resets hash on the hasher's own threads, and the loop keeps turning
while they do.

The property is checked without a clock: a ticker on the loop counts its turns, and each hash
notes the count before and after it ran."""

from __future__ import annotations

import asyncio
import threading

from app.auth.tokens import PasswordHasher
from tests.conftest import TEST_PASSWORD


class WatchedHasher(PasswordHasher):
    def __init__(self, ticks: list[int]) -> None:
        super().__init__()
        self.ticks = ticks
        self.calls: list[tuple[str, bool, int, int]] = []  # (what, on the loop's thread, ticks before, after)
        self.loop_thread = threading.get_ident()

    def _watch(self, what: str, work):
        before = self.ticks[0]
        result = work()
        self.calls.append((what, threading.get_ident() == self.loop_thread, before, self.ticks[0]))
        return result

    def verify(self, password: str, password_hash: str | None) -> bool:
        return self._watch("verify", lambda: super(WatchedHasher, self).verify(password, password_hash))

    def hash(self, password: str) -> str:
        return self._watch("hash", lambda: super(WatchedHasher, self).hash(password))


async def test_logins_and_user_changes_hash_off_the_event_loop(guard):
    admin = await guard.headers("admin")
    await guard.add_user("alice", "viewer")
    ticks = [0]
    hasher = WatchedHasher(ticks)
    guard.runtime.hasher = hasher
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks[0] += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    try:
        logins = await asyncio.gather(
            *(
                guard.client.post("/api/v1/auth/token", data={"username": name, "password": password})
                for name, password in [("alice", TEST_PASSWORD), ("alice", "wrong-password-1")]
                + [(f"nobody-{i}", "wrong-password-2") for i in range(4)]
            )
        )
        created = await guard.client.post(
            "/api/v1/users",
            headers=admin,
            json={"username": "bob", "password": "bob-password-123", "role": "viewer"},
        )
        reset = await guard.client.post(
            "/api/v1/users/bob/password", headers=admin, json={"password": "bob-password-456"}
        )
    finally:
        stop.set()
        await running
    assert [r.status_code for r in logins] == [200] + [401] * 5
    assert created.status_code == 201 and reset.status_code == 200
    assert sorted(what for what, *_ in hasher.calls) == ["hash", "hash"] + ["verify"] * 6
    assert not [call for call in hasher.calls if call[1]], hasher.calls  # none on the loop's thread
    # The loop turned while hashes ran (on the loop it could not have: before == after for every one).
    assert any(after > before for _, _, before, after in hasher.calls), hasher.calls
