"""Prometheus registry and metric names; structured logging."""
