"""Notifications: channels, the durable outbox sender, escalation and message catalogs."""
