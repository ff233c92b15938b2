"""What the Text and Attention pages compute: per-token probabilities, the next-token distribution
under several temperatures, and the attention weights of every layer and head.

Axes: T tokens, V vocabulary, L layers, H heads.

A token's probability is read from one forward pass of the model over the prompt and the
generated ids: p(x_t | x_<t) = softmax(z_t)[x_t] at temperature 1 (what the model believes,
before any sampling filter). Its entropy H = -sum_v p_v log p_v (nats) says how many choices the
model was weighing. The temperature panel applies :mod:`genlab.generation.processors` in the
sampler's order (temperature, top-k, top-p, min-p) to the logits after the prompt.

Attention weights come from the eager reference path: :func:`capture_attention` routes every
self-attention module of a GPT or BERT through :func:`genlab.layers.attention.attention_weights`
for one forward pass, records softmax(Q K^T / sqrt(D) + A + M) per layer (B, H, T, S), and returns
weights @ V, which equals the SDPA output (tests/studio check the logits agree).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.generation import processors as P
from genlab.generation.decode import GenerationConfig, generate
from genlab.layers.attention import ATTENTION, MultiHeadAttention, attention_weights, repeat_kv

TEXT_FAMILIES = ("gpt",)
ATTENTION_FAMILIES = ("gpt", "bert")
MAX_NEW_TOKENS = 200
MAX_PROMPT_CHARS = 2000
MAX_ATTENTION_TOKENS = 96  # the head view draws up to T^2 lines


def token_text(tok, token_id: int) -> str:
    """How one token reads on its own (WordPiece / BPE pieces by name, characters decoded)."""
    piece = tok.id_to_token(token_id) if hasattr(tok, "id_to_token") else None
    return piece if piece is not None else tok.decode([token_id])


def check_prompt(prompt: str | None) -> str:
    if prompt is None or not prompt.strip():
        raise ConfigError("the prompt is empty: type a few words (or characters) for the model to continue")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ConfigError(f"the prompt has {len(prompt):,} characters; the studio takes at most {MAX_PROMPT_CHARS:,}")
    return prompt


def encode_prompt(model: nn.Module, tok, prompt: str) -> list[int]:
    ids = tok.encode(check_prompt(prompt))
    if not ids:
        raise ConfigError("the prompt encodes to no tokens: use characters the tokenizer knows")
    limit = model.config.block_size
    if len(ids) >= limit:
        raise ConfigError(f"the prompt is {len(ids)} tokens; this model's context is {limit}: shorten it")
    return ids


@dataclass
class TokenInfo:
    """One token of prompt + generation, with what the model made of its position."""

    id: int
    text: str
    prob: float | None  # p(token | the tokens before it); None for the first prompt token
    entropy: float | None  # of that position's distribution, nats
    generated: bool
    alternatives: list[tuple[str, float]]  # the top-k tokens at that position and their probabilities


@torch.no_grad()
def token_probabilities(model: nn.Module, tok, ids: list[int], n_prompt: int, k: int = 5) -> list[TokenInfo]:
    """Every token of ``ids`` (prompt first, ``n_prompt`` of them) with p(token | past), entropy and the
    top-``k`` alternatives, from one forward pass at temperature 1."""
    x = torch.tensor([ids], dtype=torch.long)
    logits = _logits(model(x))[0].float()  # (T, V)
    logp = torch.log_softmax(logits, dim=-1)  # (T, V)
    probs = logp.exp()
    entropy = -(probs * logp).nan_to_num().sum(-1)  # (T,)
    top = probs.topk(min(k, probs.size(-1)), dim=-1)  # (T, k)
    out = []
    for t, token in enumerate(ids):
        if t == 0:
            out.append(TokenInfo(token, token_text(tok, token), None, None, False, []))
            continue
        alts = [(token_text(tok, int(i)), float(p)) for p, i in zip(top.values[t - 1], top.indices[t - 1])]
        out.append(
            TokenInfo(
                token, token_text(tok, token), float(probs[t - 1, token]), float(entropy[t - 1]), t >= n_prompt, alts
            )
        )
    return out


def _logits(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits


def sampling(max_new_tokens: int = 40, seed: int = 0, **settings) -> GenerationConfig:
    """The Text page's sampling controls as the generation engine's config (its fields: temperature,
    top_k, top_p, min_p and the penalties), checked, with the page's length limit."""
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, seed=seed, **settings)
    P.check_sampling(cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p)
    if not 1 <= cfg.max_new_tokens <= MAX_NEW_TOKENS:
        raise ConfigError(f"new tokens must be between 1 and {MAX_NEW_TOKENS}, got {cfg.max_new_tokens}")
    return cfg


def complete(model: nn.Module, tok, prompt: str, s: GenerationConfig) -> tuple[list[int], int]:
    """Generate a continuation of ``prompt`` with the settings of :func:`sampling`: (prompt +
    generated ids, number of prompt ids)."""
    ids = encode_prompt(model, tok, prompt)
    room = model.config.block_size - len(ids)
    cfg = dataclasses.replace(s, max_new_tokens=min(s.max_new_tokens, room), eos_id=getattr(tok, "eos_id", None))
    gen = generate(model, [ids], cfg)[0][0]
    return ids + gen.tokens, len(ids)


@torch.no_grad()
def next_token_distributions(
    model: nn.Module, tok, prompt: str, temperatures: list[float], s: GenerationConfig, k: int = 10
) -> list[dict]:
    """The distribution of the token after ``prompt`` at each temperature (0 = greedy: all mass on the
    argmax), through the sampler's filters (top-k, top-p, min-p of ``s``): per temperature
    ``{"temperature", "entropy", "top": [(token text, p), ...]}`` with the ``k`` most likely tokens."""
    P.check_sampling(max(temperatures), s.top_k, s.top_p, s.min_p)
    ids = encode_prompt(model, tok, prompt)
    logits = _logits(model(torch.tensor([ids[-model.config.block_size :]])))[:, -1].float()  # (1, V)
    panels = []
    for t in temperatures:
        if t < 0:
            raise ConfigError(f"temperature must be >= 0 (0 is greedy), got {t}")
        if t == 0:
            z = torch.full_like(logits, P.NEG_INF).scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
        else:
            z = P.min_p(P.top_p(P.top_k(P.temperature(logits, t), s.top_k), s.top_p), s.min_p)
        probs = torch.softmax(z, dim=-1)[0]  # (V,)
        logp = torch.log(probs.clamp_min(1e-30))
        entropy = float(-(probs * logp).sum())
        top = probs.topk(min(k, probs.numel()))
        panels.append(
            {
                "temperature": float(t),
                "entropy": max(entropy, 0.0),
                "top": [(token_text(tok, int(i)), float(p)) for p, i in zip(top.values, top.indices)],
            }
        )
    return panels


# --- attention -----------------------------------------------------------------------------


def attention_modules(model: nn.Module) -> list[MultiHeadAttention]:
    """The self-attention modules of a GPT or BERT, in layer order; ConfigError for an efficient
    backend (its weights are not the full softmax this view draws)."""
    kind = getattr(getattr(model, "config", None), "attention", "sdpa")
    mods = [m for m in model.modules() if isinstance(m, MultiHeadAttention) and not m.cross]
    plain = (ATTENTION["eager"], ATTENTION["sdpa"])
    if kind not in ("eager", "sdpa") or any(m.attend not in plain for m in mods):
        raise ConfigError(f"the attention view draws full softmax attention; this model uses {kind} attention")
    if not mods:
        raise ConfigError("this model has no self-attention layers to show")
    return mods


@contextlib.contextmanager
def capture_attention(model: nn.Module):
    """Within the block, every self-attention module of ``model`` runs the eager reference path and
    appends its weights (B, H, T, S) to the list this yields, one entry per layer call."""
    maps: list[torch.Tensor] = []

    def recorder(q, k, v, mask=None, is_causal=False, dropout_p=0.0, bias=None, scale=None):
        w = attention_weights(q, k, mask, is_causal, bias, scale)  # (B, H, T, S)
        maps.append(w.detach().float())
        return w @ repeat_kv(v, q.size(1))  # (B, H, T, D)

    mods = attention_modules(model)
    saved = [m.attend for m in mods]
    try:
        for m in mods:
            m.attend = recorder
        yield maps
    finally:
        for m, fn in zip(mods, saved):
            m.attend = fn


@torch.no_grad()
def attention_maps(model: nn.Module, tok, family: str, text: str) -> tuple[list[str], torch.Tensor]:
    """(token texts, weights (L, H, T, T)) of ``text`` under a GPT (causal) or BERT ([CLS] text [SEP])."""
    if family not in ATTENTION_FAMILIES:
        raise ConfigError(f"the attention view needs a gpt or bert run; this is a {family} run")
    check_prompt(text)
    if family == "bert":
        ids = tok.encode(text, add_special_tokens=True)[: model.config.block_size]
    else:
        ids = tok.encode(text)[-model.config.block_size :]
    if not ids:
        raise ConfigError("the text encodes to no tokens: use characters the tokenizer knows")
    if len(ids) > MAX_ATTENTION_TOKENS:
        raise ConfigError(f"the text is {len(ids)} tokens; the attention view shows at most {MAX_ATTENTION_TOKENS}")
    x = torch.tensor([ids])
    with capture_attention(model) as maps:
        if family == "bert":
            model.encode(x)
        else:
            model(x)
    weights = torch.stack([m[0] for m in maps])  # (L, H, T, T)
    return [token_text(tok, i) for i in ids], weights
