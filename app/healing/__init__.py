"""Self-healing: recovery strategies, policies, budgets and attempts; see docs/LIFECYCLE.md for the life of an incident."""
