"""Tier 3: turning a model's logits into text."""
