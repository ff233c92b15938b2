"""Tier 3: evaluation metrics. Models and feature extractors are passed in as arguments."""
