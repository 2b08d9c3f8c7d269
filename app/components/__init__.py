"""The components registry: what the guard watches and how it may heal it."""
