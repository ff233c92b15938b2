"""Tier 3: training objectives. Each wraps a model passed in as an argument."""
