"""The JSONL files of the alignment stages, read with one-line errors that name the bad line.

- conversations (SFT): ``{"messages": [{"role": "user", "content": ...}, ...]}``, or pre-rendered
  ``{"segments": [[text, is_assistant], ...]}`` (text already in the chat template's form);
- preferences (reward, DPO): ``{"prompt": ..., "chosen": ..., "rejected": ...}``;
- verifiable prompts (GRPO, PPO): ``{"prompt": ..., "answer": ...}``: the reward function
  compares a completion with ``answer``.

Until a chat template is wired in, :func:`render_plain` renders messages as ``User: ...`` /
``Assistant: ...`` lines; a template only has to provide the same ``segments(messages)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from genlab.core.errors import DataError
from genlab.data.chat import iter_jsonl

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
VERIFIABLE_KEYS = ("prompt", "answer")
ROLES = ("system", "user", "assistant")

Segments = list[tuple[str, bool]]  # (text, counts for the loss)


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


def render_plain(messages: list[dict]) -> Segments:
    """Messages -> segments in a plain ``Role: text`` form; only assistant replies count for the loss."""
    out: Segments = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise DataError(f"a message needs a role in {list(ROLES)} and string content, got {m!r}")
        if role == "assistant":
            out.append(("Assistant:", False))
            out.append((f" {content}\n", True))
        else:
            out.append((f"{role.capitalize()}: {content}\n", False))
    return out


def conversation_segments(path: str | os.PathLike, render: Callable[[list[dict]], Segments] = render_plain):
    """A conversations file as a list of segment lists (see the module docstring)."""
    result = []
    for n, row in enumerate(read_jsonl(path), 1):
        try:
            if "segments" in row:
                segs = [(str(t), bool(a)) for t, a in row["segments"]]
            elif isinstance(row.get("messages"), list):
                segs = render(row["messages"])
            else:
                raise DataError("needs 'messages' (a list) or 'segments'")
        except (DataError, TypeError, ValueError) as e:
            raise DataError(f"{path}: example {n}: {e}") from None
        if not any(a for _, a in segs):
            raise DataError(f"{path}: example {n} has no assistant text to learn from")
        result.append(segs)
    return result


# --- tokenised batches ----------------------------------------------------------------------

Pair = tuple[list[int], list[int], list[int]]  # prompt, chosen answer, rejected answer (token ids)


def encode_pairs(tok, rows: list[dict]) -> list[Pair]:
    """Preference rows -> (prompt, chosen, rejected) ids; the answers end with the end-of-text token if any."""
    eos = [tok.eos_id] if getattr(tok, "eos_id", None) is not None else []
    return [(tok.encode(r["prompt"]), tok.encode(r["chosen"]) + eos, tok.encode(r["rejected"]) + eos) for r in rows]


def collate_pairs(pairs: list[Pair], block_size: int, pad_id: int = 0):
    """(ids, attention_mask, completion_mask), each (2B, T): the B chosen rows then the B rejected rows,
    prompt + answer, right-padded; a row longer than the context keeps its answer and loses the prompt's start."""
    rows = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
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


__all__ = [
    "PREFERENCE_KEYS",
    "VERIFIABLE_KEYS",
    "collate_pairs",
    "conversation_segments",
    "encode_pairs",
    "read_jsonl",
    "render_plain",
]
