"""Recovery strategies: one module per kind, all implementing ``base.Strategy``."""
