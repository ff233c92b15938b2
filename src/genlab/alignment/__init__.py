"""Tier 5: aligning a language model (the ChatGPT pipeline after pretraining).

- :mod:`.logprobs`: per-token and per-sequence log-probabilities of completions (shared by all).
- :mod:`.sft`: supervised fine-tuning, the loss on assistant tokens only.
- :mod:`.reward`: a reward model from pairwise preferences (Bradley-Terry).
- :mod:`.dpo`: direct preference optimisation (no reward model, no sampling).
- :mod:`.grpo`: group-relative policy optimisation (no value model) with verifiable rewards.
- :mod:`.ppo`: PPO with a frozen reference, a per-token KL penalty and a value head.
- :mod:`.data`: the JSONL files these stages read, with one-line errors naming the bad line.
- :mod:`.safety`: moderation of the user's input and the model's output.

Each stage is a loss function of tensors plus a ``*_step`` that a recipe hands to the trainer.
"""
