"""Rollouts: completions sampled from the policy by genlab's decoding engine, laid out for the losses.

Axes: N rows (prompts x samples), T = P + C (padded prompt + padded completion).

Each row is its prompt left-padded to P, then its completion right-padded to C::

    ids             [pad pad x1 x2 x3 | y1 y2 <eos> pad]
    attention_mask  [ 0   0   1  1  1 |  1  1   1    0 ]
    completion_mask [ 0   0   0  0  0 |  1  1   1    0 ]

A completion that ended on the end-of-text token keeps it (the policy learns when to stop).
Verifiable rewards check the decoded completion against a known answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError, TokenizerError
from genlab.data.chat import check_answer, is_abstention
from genlab.generation.decode import GenerationConfig, generate, left_pad


@dataclass
class Rollout:
    ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T)
    completion_mask: torch.Tensor  # (N, T)
    texts: list[str]  # decoded completions
    prompt_index: list[int]  # row -> prompt


@torch.no_grad()
def rollout(policy: nn.Module, prompts: list[list[int]], cfg: GenerationConfig, decode, pad_id: int = 0) -> Rollout:
    """``cfg.num_return_sequences`` completions of each prompt (rows prompt-major); a prompt longer
    than the context leaves for the completion keeps its end (where the generation prompt is)."""
    room = policy.config.block_size - cfg.max_new_tokens
    if room < 1:
        raise ConfigError(f"max_new_tokens={cfg.max_new_tokens} leaves no room for a prompt in a context of "
                          f"{policy.config.block_size}: lower rollout.max_new_tokens")  # fmt: skip
    prompts = [p[-room:] for p in prompts]
    was_training = policy.training
    policy.eval()
    try:
        gens = generate(policy, prompts, cfg, decode=decode)
    finally:
        policy.train(was_training)
    rows = [g for group in gens for g in group]
    completions = [g.tokens + ([cfg.eos_id] if g.finish_reason == "eos" else []) for g in rows]
    prompt_ids, prompt_mask = left_pad([prompts[g.prompt_index] for g in rows], pad_id)
    if prompt_mask is None:
        prompt_mask = torch.ones_like(prompt_ids)
    width = max(1, max(len(c) for c in completions))
    comp = torch.full((len(rows), width), pad_id, dtype=torch.long)
    comp_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, c in enumerate(completions):
        comp[r, : len(c)] = torch.tensor(c, dtype=torch.long)
        comp_mask[r, : len(c)] = 1
    ids = torch.cat([prompt_ids, comp], dim=1)  # (N, P + C)
    attention_mask = torch.cat([prompt_mask, comp_mask], dim=1)
    completion_mask = torch.cat([torch.zeros_like(prompt_mask), comp_mask], dim=1)
    device = next(policy.parameters()).device
    return Rollout(
        ids.to(device), attention_mask.to(device), completion_mask.to(device),
        [g.text or "" for g in rows], [g.prompt_index for g in rows],
    )  # fmt: skip


def verifiable_reward(completion: str, question: dict | str, abstain: float = 0.0) -> float:
    """1 for a right answer (:func:`genlab.data.chat.check_answer`: ``question`` is a checkable
    question row, or just its answer), ``abstain`` for "I don't know", -1 for anything else: a
    correct answer above abstaining above a wrong one."""
    row = question if isinstance(question, dict) else {"answer": question}
    if check_answer(row, completion):
        return 1.0
    return abstain if is_abstention(completion) else -1.0


def check_same_tokenizer(policy_tok, reward_tok, where: str) -> None:
    """A reward model scores token ids: it must use the policy's tokenizer (TokenizerError otherwise)."""
    if policy_tok.fingerprint() != reward_tok.fingerprint():
        raise TokenizerError(
            f"{where} uses another tokenizer ({reward_tok.kind}, {reward_tok.vocab_size:,} tokens) than the policy "
            f"({policy_tok.kind}, {policy_tok.vocab_size:,} tokens): train the reward model from the policy's run"
        )


__all__ = ["Rollout", "check_same_tokenizer", "rollout", "verifiable_reward"]
