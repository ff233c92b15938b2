"""The JSONL files of the alignment stages, read with one-line errors that name the bad line,
and rendered through the run's chat template (:mod:`genlab.tokenizers.chat`, the one renderer).

- conversations (SFT): ``{"messages": [{"role": "user", "content": ...}, ...]}``;
- preferences (reward, DPO): ``{"prompt": ..., "chosen": ..., "rejected": ...}``;
- verifiable prompts (GRPO, PPO): ``{"prompt": ..., "answer": ...}`` (optionally ``check``: see
  :func:`genlab.data.chat.check_answer`): the reward function checks a completion against it.

A ``prompt`` is the user's message (plus an optional ``system`` string); the stage renders it with
the generation prompt, and an answer as the assistant's content and its end-of-turn markup.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from genlab.core.errors import DataError
from genlab.data.chat import iter_jsonl, read_conversations
from genlab.tokenizers.chat import ChatTemplate, prompt_ids, render_ids, reply_ids

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
VERIFIABLE_KEYS = ("prompt", "answer")

Example = tuple[list[int], list[int]]  # token ids, assistant mask (1/0), same length


def read_jsonl(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> list[dict]:
    """Every line of a JSONL file as a dict holding string ``keys``; a bad line is a DataError naming it."""
    path, rows = Path(path), []
    for n, row in iter_jsonl(path):
        missing = [k for k in keys if not isinstance(row.get(k), str)]
        if missing:
            raise DataError(f"{path}:{n}: needs string field(s) {missing} (a line has {list(keys)})")
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no examples")
    return rows


def conversation_examples(path: str | os.PathLike, template: ChatTemplate, tok) -> list[Example]:
    """A conversations file as (ids, mask) examples: the mask is 1 exactly on each assistant turn's
    content and end-of-turn markup (:func:`genlab.tokenizers.chat.render_ids`)."""
    rows = read_conversations(path)
    if not rows:
        raise DataError(f"{path} holds no examples")
    return [render_ids(template, tok, row["messages"]) for row in rows]


def prompt_messages(row: dict) -> list[tuple[str, str]]:
    """A row's prompt as messages: its optional ``system`` string, then the user's ``prompt``."""
    system = row.get("system")
    return ([("system", system)] if isinstance(system, str) and system else []) + [("user", row["prompt"])]


def encode_prompt(template: ChatTemplate, tok, row: dict) -> list[int]:
    """A row's prompt rendered with the generation prompt: what the policy continues."""
    return prompt_ids(template, tok, prompt_messages(row))


# --- tokenised batches ----------------------------------------------------------------------

Pair = tuple[list[int], list[int], list[int]]  # prompt, chosen answer, rejected answer (token ids)


def encode_pairs(template: ChatTemplate, tok, rows: list[dict]) -> list[Pair]:
    """Preference rows -> (prompt, chosen, rejected) ids: the prompt with the generation prompt,
    each answer as the assistant's content and its end-of-turn markup."""
    reply = lambda text: reply_ids(template, tok, text)
    return [(encode_prompt(template, tok, r), reply(r["chosen"]), reply(r["rejected"])) for r in rows]


def collate_completions(rows: list[tuple[list[int], list[int]]], block_size: int, pad_id: int = 0):
    """(prompt, answer) id rows -> (ids, attention_mask, completion_mask), each (N, T), right-padded;
    a row longer than the context keeps its answer and loses the prompt's start."""
    seqs = []
    for prompt, answer in rows:
        answer = answer[:block_size]
        prompt = prompt[max(0, len(prompt) + len(answer) - block_size) :]
        seqs.append((prompt + answer, [0] * len(prompt) + [1] * len(answer)))
    width = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros(len(seqs), width, dtype=torch.long)
    completion = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, (s, m) in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attention[i, : len(s)] = 1
        completion[i, : len(m)] = torch.tensor(m)
    return ids, attention, completion


def collate_pairs(pairs: list[Pair], block_size: int, pad_id: int = 0):
    """(ids, attention_mask, completion_mask), each (2B, T): the B chosen rows then the B rejected rows
    (see :func:`collate_completions`)."""
    rows = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
    return collate_completions(rows, block_size, pad_id)


__all__ = [
    "PREFERENCE_KEYS",
    "VERIFIABLE_KEYS",
    "collate_completions",
    "collate_pairs",
    "conversation_examples",
    "encode_pairs",
    "encode_prompt",
    "prompt_messages",
    "read_jsonl",
]
