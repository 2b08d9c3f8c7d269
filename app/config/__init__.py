"""Configuration: the environment-driven settings, their sections, and declarative components."""
