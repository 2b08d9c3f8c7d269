from tests.monitoring.conftest import http_target  # noqa: F401 - re-exported fixture
