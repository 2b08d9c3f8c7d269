"""Login throttling, per account *and* address, plus a slower per-account back-off.

A wrong password counts against the pair (account, client address; an IPv6 client's /64): after
``security.login_max_failures`` failures within ``security.login_lockout`` that address may not log
into that account until the window has slid past them, even with the right password. Someone
guessing from one place therefore cannot lock the real user out from another place. Against a
guesser spread over many addresses, the account itself backs off (``User.failed_logins``): after
``security.login_global_max_failures`` failures from anywhere it is locked for ``login_lockout``,
doubling with each further failure up to an hour (OWASP's authentication cheat sheet: lock per
account and address, slower global back-off).

The per-pair counts live in the rate limiter's storage, so replicas sharing Redis share them, and
they keep being enforced (in memory) while Redis is away.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.api.ratelimit import RateLimiter
    from app.config.sections import SecuritySection

LOGIN_GROUP = "login"


def login_failure_limit(security: SecuritySection) -> str:
    return f"{security.login_max_failures} per {max(1, round(security.login_lockout))} seconds"


class LoginThrottle:
    def __init__(self, limiter: RateLimiter, address: str):
        self.limiter = limiter
        self.address = address

    def _key(self, username: str) -> str:
        # A digest, not the name: anyone may send any name (unknown ones are counted too), up to a
        # form field's megabyte, and the key is kept for the whole lockout window.
        name = hashlib.sha256(username.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()
        return f"{name}|{self.address}"

    async def blocked(self, username: str) -> bool:
        return await self.limiter.over_limit(LOGIN_GROUP, self._key(username))

    async def failed(self, username: str) -> None:
        await self.limiter.count(LOGIN_GROUP, self._key(username))
