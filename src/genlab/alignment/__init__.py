"""Alignment: SFT, reward models, PPO/DPO/GRPO and safety (tier 5)."""
