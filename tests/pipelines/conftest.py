from tests.notify.conftest import notify_settings  # noqa: F401  (re-exported fixture)
