"""Metric points: ingest, storage, rollups and summaries."""
