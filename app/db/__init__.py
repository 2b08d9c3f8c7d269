"""Persistence: portable types, the engine factory, the one transaction owner, and all ORM models."""
