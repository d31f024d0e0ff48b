"""Pydantic models for bundle.yaml (build side) and config.yaml (install side)."""
