"""Check kinds: how a component is observed."""
