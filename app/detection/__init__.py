"""Streaming detection: anomaly score, threshold rules, trend prediction (pure Python, no I/O)."""
