"""Tier 1: building blocks shared by every model family."""
