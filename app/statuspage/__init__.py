"""The human-facing status page (`GET /status`)."""
