"""What each stage of the chat pipeline changes, measured on held-out data.

Every function receives the models (and the run's tokenizer and chat template) as arguments:

- :func:`answers`: the model's replies to prompts through the chat template (greedy or sampled);
- :func:`answer_perplexity`: exp of the mean NLL of reference replies (the SFT mask: assistant
  content and end-of-turn markup only);
- :func:`checker_rates`: accuracy, confident-wrong (hallucination) and abstention rates of replies
  to checkable questions (:func:`genlab.data.chat.check_answer`);
- :func:`reward_scores`: a reward model's score of each (prompt, reply);
- :func:`kl_per_answer`: KL(policy || reference) summed over a reply's tokens, exact over the
  vocabulary at each position (no sampling noise), averaged over replies;
- :func:`win_rate`: how often one set of scores beats another (ties count half);
- :func:`pairwise_accuracy_by_source`: a reward model's accuracy on held-out preference pairs, per source;
- :func:`distinct_n` and :func:`self_bleu`: the diversity of samples (Li et al. 2016, arXiv:1510.03055;
  Zhu et al. 2018's Texygen, arXiv:1802.01886), BLEU from sacrebleu.

Axes: N rows, T time, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.alignment import data as D
from genlab.alignment.logprobs import forward_logits
from genlab.data.chat import check_answer, is_abstention
from genlab.generation.decode import GenerationConfig, generate
from genlab.tokenizers.chat import ChatTemplate, end_of_turn_id, render_ids, reply_ids


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@torch.no_grad()
def answers(
    model: nn.Module,
    tok,
    template: ChatTemplate,
    rows: Sequence[dict],
    max_new_tokens: int = 48,
    temperature: float = 0.0,
    n: int = 1,
    seed: int = 0,
    batch: int = 32,
) -> list[list[str]]:
    """``n`` replies to each row's prompt (``prompt`` and optional ``system``), as the user sees them."""
    model.eval()
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, num_return_sequences=n,
                           stop=template.stop, eos_id=end_of_turn_id(template, tok), bos_id=tok.eos_id, seed=seed,
                           context="window")  # fmt: skip
    out: list[list[str]] = []
    for part in _chunks(list(rows), batch):
        prompts = [D.encode_prompt(template, tok, r) for r in part]
        for group in generate(model, prompts, cfg, decode=tok.decode):
            out.append([template.clean(g.text or "") for g in group])
    return out


@torch.no_grad()
def answer_perplexity(
    model: nn.Module, tok, template: ChatTemplate, conversations: Sequence[dict], block_size: int, batch: int = 16
) -> float:
    """exp(mean NLL per learned token) of reference conversations (``messages``): the tokens the SFT
    mask covers, each example cut to its last ``block_size + 1`` tokens as in training."""
    model.eval()
    examples = [render_ids(template, tok, c["messages"]) for c in conversations]
    pad = tok.eos_id if tok.eos_id is not None else 0
    total, count = 0.0, 0
    for part in _chunks(examples, batch):
        width = min(max(len(i) for i, _ in part), block_size + 1)
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros(len(part), width, dtype=torch.long)
        for r, (i, m) in enumerate(part):
            i, m = i[-width:], m[-width:]
            ids[r, : len(i)], mask[r, : len(m)] = torch.tensor(i), torch.tensor(m)
        ids, mask = ids.to(_device(model)), mask.to(_device(model))
        logits = forward_logits(model, ids[:, :-1])  # (N, T-1, V)
        nll = F.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="none")  # (N, T-1)
        keep = mask[:, 1:].bool()
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return math.exp(total / count) if count else math.nan


def checker_rates(rows: Sequence[dict], replies: Sequence[str]) -> dict[str, float]:
    """accuracy, confident_wrong (neither right nor an abstention: the hallucination rate) and
    abstention, each a share of the questions."""
    right = [check_answer(q, a) for q, a in zip(rows, replies)]
    abstain = [not r and is_abstention(a) for r, a in zip(right, replies)]
    n = max(len(right), 1)
    return {
        "accuracy": sum(right) / n,
        "confident_wrong": sum(not r and not x for r, x in zip(right, abstain)) / n,
        "abstention": sum(abstain) / n,
    }


def _completion_batch(tok, template: ChatTemplate, rows: Sequence[dict], replies: Sequence[str], block: int, device):
    pad = tok.eos_id if tok.eos_id is not None else 0
    pairs = [(D.encode_prompt(template, tok, r), reply_ids(template, tok, a)) for r, a in zip(rows, replies)]
    return tuple(x.to(device) for x in D.collate_completions(pairs, block, pad))


@torch.no_grad()
def reward_scores(
    scorer: nn.Module, tok, template: ChatTemplate, rows: Sequence[dict], replies: Sequence[str], batch: int = 16
) -> list[float]:
    """The reward model's score of each (prompt, reply), read at the reply's last token."""
    scorer.eval()
    block = scorer.backbone.config.block_size
    out: list[float] = []
    for idx in _chunks(list(range(len(rows))), batch):
        ids, attention, _ = _completion_batch(tok, template, [rows[i] for i in idx], [replies[i] for i in idx],
                                              block, _device(scorer))  # fmt: skip
        out += scorer.score(ids, attention).float().tolist()
    return out


@torch.no_grad()
def kl_per_answer(
    policy: nn.Module,
    reference: nn.Module,
    tok,
    template: ChatTemplate,
    rows: Sequence[dict],
    replies: Sequence[str],
    batch: int = 16,
) -> float:
    """Mean over replies of sum_t KL(pi(.|x_<t) || pi_ref(.|x_<t)) on the reply's tokens (nats):
    zero when the policy is the reference."""
    policy.eval()
    reference.eval()
    block = policy.config.block_size
    total, n = 0.0, 0
    for idx in _chunks(list(range(len(rows))), batch):
        ids, attention, completion = _completion_batch(tok, template, [rows[i] for i in idx],
                                                       [replies[i] for i in idx], block, _device(policy))  # fmt: skip
        logp = F.log_softmax(forward_logits(policy, ids, attention)[:, :-1].float(), -1)  # (N, T-1, V)
        logq = F.log_softmax(forward_logits(reference, ids, attention)[:, :-1].float(), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1)  # (N, T-1): the position predicting token t+1
        total += float((kl * completion[:, 1:]).sum())
        n += len(idx)
    return total / max(n, 1)


def win_rate(scores: Sequence[float], baseline: Sequence[float]) -> float:
    """Share of items where ``scores`` beats ``baseline`` (ties count half)."""
    if not scores:
        return math.nan
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline)) / len(scores)


@torch.no_grad()
def pairwise_accuracy_by_source(
    scorer: nn.Module, tok, template: ChatTemplate, pairs: Sequence[dict], key: str = "source"
) -> dict[str, dict]:
    """{source: {"accuracy", "pairs"}}: the share of held-out pairs whose chosen answer scores higher."""
    chosen = reward_scores(scorer, tok, template, pairs, [p["chosen"] for p in pairs])
    rejected = reward_scores(scorer, tok, template, pairs, [p["rejected"] for p in pairs])
    groups: dict[str, list[bool]] = {}
    for p, c, r in zip(pairs, chosen, rejected):
        groups.setdefault(str(p.get(key, "")), []).append(c > r)
    return {s: {"accuracy": sum(v) / len(v), "pairs": len(v)} for s, v in sorted(groups.items())}


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n: unique word n-grams / all word n-grams over the texts (0.0 when there are none)."""
    grams = [tuple(w[i : i + n]) for t in texts for w in [t.split()] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(groups: Sequence[Sequence[str]]) -> float:
    """Mean over samples of BLEU (sacrebleu, 0-100) of each sample against the other samples of its
    group: high when the samples of a prompt repeat one another."""
    import sacrebleu

    scores = []
    for group in groups:
        for i, hyp in enumerate(group):
            refs = [g for j, g in enumerate(group) if j != i]
            if refs:
                scores.append(sacrebleu.sentence_bleu(hyp, refs).score)
    return sum(scores) / len(scores) if scores else math.nan


__all__ = [
    "answer_perplexity",
    "answers",
    "checker_rates",
    "distinct_n",
    "kl_per_answer",
    "pairwise_accuracy_by_source",
    "reward_scores",
    "self_bleu",
    "win_rate",
]
