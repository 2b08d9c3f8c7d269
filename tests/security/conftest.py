"""Fixtures shared by the security tests: the notify receiver (a real aiohttp server on 127.0.0.1)."""

from tests.notify.conftest import receiver  # noqa: F401 - re-exported as a fixture
