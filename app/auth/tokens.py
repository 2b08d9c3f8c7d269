"""JWT issue and verification (PyJWT, HS256) and argon2 password hashing (pwdlib)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError

from app.config.settings import MIN_SECRET_KEY_LENGTH
from app.core.errors import ConfigurationError, Unauthorized

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    token_version: int


class TokenCodec:
    def __init__(self, secret_key: str, *, issuer: str, audience: str, expiry_seconds: float):
        if len(secret_key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigurationError(
                f"the JWT secret key must be at least {MIN_SECRET_KEY_LENGTH} characters"
            )
        self._key = secret_key
        self.issuer = issuer
        self.audience = audience
        self.expiry = timedelta(seconds=expiry_seconds)

    def issue(
        self, subject: str, *, token_version: int = 0, now: datetime | None = None
    ) -> tuple[str, TokenClaims]:
        now = now or datetime.now(UTC)
        claims = TokenClaims(
            subject=subject,
            jti=uuid.uuid4().hex,
            issued_at=now,
            expires_at=now + self.expiry,
            token_version=token_version,
        )
        payload = {
            "sub": subject,
            "jti": claims.jti,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
            "ver": token_version,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def decode(self, token: str) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # never trust the header's alg (defeats alg=none / key confusion)
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        # A valid signature does not make the claims well-formed: refuse anything this code did not
        # issue (a string version, a timestamp past year 9999...) as an invalid token, never a 500.
        subject, jti, version = payload["sub"], payload["jti"], payload.get("ver", 0)
        if not isinstance(subject, str) or not subject or not isinstance(jti, str) or not jti:
            raise Unauthorized("invalid token")
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**31:
            raise Unauthorized("invalid token")
        try:
            issued_at = datetime.fromtimestamp(payload["iat"], UTC)
            expires_at = datetime.fromtimestamp(payload["exp"], UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            raise Unauthorized("invalid token") from None
        return TokenClaims(
            subject=subject, jti=jti, issued_at=issued_at, expires_at=expires_at, token_version=version
        )


class PasswordHasher:
    """argon2id via pwdlib; a dummy hash lets unknown users cost the same time as known ones.

    A hash costs about 0.1 s of CPU by design. The ``*_async`` forms run it on this hasher's own two
    threads (argon2 releases the GIL): on the event loop, a few logins at once held every request,
    ``/health`` and the probes for as long; on the loop's default executor, a login flood would queue
    the host name lookups of probes and webhooks behind it."""

    THREADS = 2

    def __init__(self) -> None:
        self._hash = PasswordHash.recommended()
        self._dummy = self._hash.hash(secrets.token_urlsafe(16))
        self._pool: ThreadPoolExecutor | None = None

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="pipeline-guard-argon2")
        return self._pool

    async def hash_async(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._threads(), self.hash, password)

    async def verify_async(self, password: str, password_hash: str | None) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads(), self.verify, password, password_hash
        )

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        if password_hash is None:
            self._hash.verify(password, self._dummy)
            return False
        try:
            return self._hash.verify(password, password_hash)
        except UnknownHashError:  # a corrupt hash must read as "wrong password", not a 500
            # (a damaged argon2 hash is already answered False by pwdlib itself)
            return False


def generate_password(length: int = 20) -> str:
    return secrets.token_urlsafe(length)
