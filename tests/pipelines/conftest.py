from tests.client.conftest import live  # noqa: F401  (a real guard served by uvicorn)
from tests.notify.conftest import notify_settings  # noqa: F401  (re-exported fixture)
