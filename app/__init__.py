"""Pipeline Guard: a self-healing guard for ML and data pipelines."""

__version__ = "0.1.0"
