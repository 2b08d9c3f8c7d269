"""Self-healing: recovery strategies, policies, budgets and attempts.

See docs/LIFECYCLE.md for the life of an incident.
"""
