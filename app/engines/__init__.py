"""Inference engines, one per file, each behind a small protocol (see base.py)."""
