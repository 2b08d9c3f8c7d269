"""Alerts: fingerprinted, deduplicated conditions with a lifecycle (firing, acknowledged, silenced,
resolved)."""
