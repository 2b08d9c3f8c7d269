"""Clients and receivers for systems the guard talks to (Kubernetes API, Alertmanager, ...)."""
