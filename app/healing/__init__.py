"""Self-healing: recovery strategies, policies, budgets and attempts (see issue 6)."""
