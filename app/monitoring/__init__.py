"""Monitoring engine: scheduler, health state machine, status, history, heartbeats."""
