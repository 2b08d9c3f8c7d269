"""Check kinds: how a component is observed. See `registry.default_registry()`."""
