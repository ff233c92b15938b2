"""Decoding: prefill the prompt, then one token per step over a KV cache.

Works with any model that keeps this contract (GPT does):

    model(ids, cache=None, positions=None, attention_mask=None, last_only=False) -> logits (B, T, V)
    model.make_cache(batch, max_len) -> KVCache
    model.config.block_size

and with encoder-decoder models (``model.is_encoder_decoder``: genlab's Seq2Seq), whose
prompts are the encoder's inputs:

    model.encode(src, attention_mask) -> memory (B, S, C)
      or, for inputs that are not token ids (ShowTell's images, one prompt each):
    model.encode_inputs(prompts) -> memory (B, S, C), memory_mask (B, S) or None
    model.decode(ids, memory, memory_mask, cache=None, positions=None, last_only=False) -> logits
    model.config.block_size, .pad_id, .decoder_start_id

The sources are right-padded (their positions start at 0 in every row) and encoded once; the
decoder starts every row from ``decoder_start_id`` and runs the same token loop as a
decoder-only model. Its cache keeps each layer's cross-attention keys/values of the memory,
projected at the first step and shared by every later step (``KVCache.cross``); beams and
samples of one source copy them once, after that first step.

Axes: B batch (prompts x beams or samples), P padded prompt length, V vocab.

Prompts of different lengths are left-padded, so every row's next token sits in the same
column: ``attention_mask`` hides the padding and ``positions`` count real tokens only, so
a padded row computes exactly what it would alone. Several samples or beams of one prompt
share its prefill: the B prompts run once, then each prompt's cache row is copied into its
n rows (``KVCache.repeat_rows``), as nanochat does. ``use_cache=False`` recomputes the whole
sequence at every step: the plain reference path the cached one is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.generation import processors as P

CONTEXT_POLICIES = ("error", "window", "truncate")


@dataclass
class GenerationConfig:
    max_new_tokens: int = 100
    temperature: float = 1.0  # 0: greedy
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    banned_tokens: tuple[int, ...] = ()
    num_beams: int = 1
    length_penalty: float = 1.0  # beam score = sum log p / (generated length ** length_penalty)
    num_return_sequences: int = 1  # samples per prompt, or the n best beams
    stop: tuple[str, ...] = ()  # stop strings, matched on the decoded text
    eos_id: int | None = None
    bos_id: int | None = None  # used for an empty prompt; without it an empty prompt is an error
    seed: int | None = None
    # prompt + new tokens > context: "error", or "window" (keep the newest tokens); for an
    # encoder-decoder's source longer than the encoder's context: "error", or "truncate" (keep its start)
    context: str = "error"
    logprobs: bool = False
    top_logprobs: int = 0
    use_cache: bool = True

    def check(self) -> None:
        P.check_sampling(self.temperature, self.top_k, self.top_p, self.min_p)
        if self.max_new_tokens < 1:
            raise ConfigError(f"max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise ConfigError(f"beams must be at least 1, got {self.num_beams}")
        if self.num_return_sequences < 1:
            raise ConfigError(f"num-samples must be at least 1, got {self.num_return_sequences}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ConfigError(f"cannot return {self.num_return_sequences} sequences from {self.num_beams} beams")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition penalty must be > 0 (1 disables it), got {self.repetition_penalty}")
        if self.context not in CONTEXT_POLICIES:
            raise ConfigError(f"context policy must be one of {CONTEXT_POLICIES}, got '{self.context}'")
        if self.top_logprobs < 0:
            raise ConfigError(f"top-logprobs must be >= 0, got {self.top_logprobs}")


@dataclass
class Generation:
    """One generated continuation."""

    tokens: list[int]
    finish_reason: str  # "length", "eos" or "stop"
    text: str | None = None
    logprobs: list[float] | None = None  # log p(token) under the model (before any processor)
    top_logprobs: list[list[tuple[int, float]]] | None = None  # alternatives at each step
    score: float | None = None  # beam search: length-normalised log-probability
    prompt_index: int = 0


@dataclass
class _Step:
    """What one decoding step produced, for every row."""

    tokens: torch.Tensor  # (B,)
    logprobs: torch.Tensor | None = None  # (B,)
    top: tuple[torch.Tensor, torch.Tensor] | None = None  # values, ids: (B, k)


# --- preparing prompts --------------------------------------------------------------------


def _prompts(prompts: list[list[int]], cfg: GenerationConfig, block_size: int) -> list[list[int]]:
    if cfg.context == "truncate":
        raise ConfigError("the 'truncate' context policy is for encoder-decoder inputs; use 'error' or 'window'")
    out = []
    for p in prompts:
        if not p:
            if cfg.bos_id is None:
                raise ConfigError("the prompt is empty and this model has no start token: give some text")
            p = [cfg.bos_id]
        if cfg.context == "error" and len(p) + cfg.max_new_tokens > block_size:
            raise ConfigError(
                f"prompt ({len(p)} tokens) + max-new-tokens ({cfg.max_new_tokens}) exceeds the model's context "
                f"of {block_size}: shorten them, or use the 'window' context policy to drop the oldest tokens"
            )
        out.append(list(p))
    return out


def _sources(prompts: list[list[int]], cfg: GenerationConfig, block_size: int) -> list[list[int]]:
    """Encoder inputs: none empty, none longer than the encoder's context (or cut to it)."""
    if cfg.context == "window":
        raise ConfigError("the 'window' context policy is for decoder-only models; use 'error' or 'truncate'")
    if cfg.max_new_tokens + 1 > block_size:  # the start token and the new ones
        raise ConfigError(
            f"max-new-tokens ({cfg.max_new_tokens}) + the start token exceeds the decoder's context of {block_size}"
        )
    out = []
    for i, p in enumerate(prompts):
        if not p:
            raise ConfigError(f"input {i} is empty: an encoder-decoder model needs at least one token to encode")
        if len(p) > block_size:
            if cfg.context != "truncate":
                raise ConfigError(
                    f"input {i} ({len(p)} tokens) exceeds the encoder's context of {block_size}: shorten it, "
                    "or use the 'truncate' context policy to keep its first tokens"
                )
            p = p[:block_size]
        out.append(list(p))
    return out


def right_pad(prompts: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, S) ids and a (B, S) 1/0 attention mask, padding on the right (encoder inputs);
    the mask is None when no row is padded."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        mask[i, : len(p)] = 1
    return ids, (None if bool(mask.all()) else mask)


def left_pad(prompts: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, P) ids and a (B, P) 1/0 attention mask; the mask is None when no row is padded."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids, (None if bool(mask.all()) else mask)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position of each token counting real tokens only: (B, S) mask -> (B, S)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


# --- the token loop -----------------------------------------------------------------------


class _Runner:
    """Feeds the model: with a KV cache (prefill, then one token per step) or without.

    The sequence lives in a preallocated (B, prompt + max_new) buffer; each step writes one
    column. Only the newest ``block_size`` columns are visible to the model (the window);
    positions count real tokens from the window's start. While the window starts at
    column 0 (the 'error' policy guarantees it does) a cached step feeds one token; once it
    slides, positions of every token change, so the cache is rebuilt from the window.

    ``ids`` has one row per prompt; the first :meth:`next_logits` runs them once and then
    copies every row (buffer, mask, cache and logits) into ``copies`` consecutive rows.
    An encoder-decoder model's ``memory`` (B, S, C) and its ``memory_mask`` (B, S) travel with
    the rows (the cached path reads the memory's keys/values from the cache after step one).
    """

    def __init__(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        mask: torch.Tensor | None,
        cfg: GenerationConfig,
        copies: int = 1,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ):
        self.model = model
        self.memory, self.memory_mask = memory, memory_mask
        self.block = model.config.block_size
        self.device = next(model.parameters()).device
        B, width = ids.shape
        total = width + cfg.max_new_tokens
        self.ids = torch.zeros(B, total, dtype=torch.long, device=self.device)
        self.ids[:, :width] = ids.to(self.device)
        self.mask = None
        if mask is not None:
            self.mask = torch.ones(B, total, dtype=torch.long, device=self.device)
            self.mask[:, :width] = mask.to(self.device)
        self.length = width  # columns filled
        self.start = 0  # first column of the window
        self.cache = model.make_cache(B, min(total, self.block)) if cfg.use_cache else None
        self.copies = copies  # rows per prompt once the prompts have run

    def _run(self, lo: int, hi: int, cache) -> torch.Tensor:
        """Logits (B, V) after columns lo..hi-1, which follow columns start..lo-1 (cached or not)."""
        if self.mask is None:
            positions = torch.arange(lo - self.start, hi - self.start, device=self.device)  # (T,)
            mask = None
        else:
            mask = self.mask[:, self.start : hi]  # (B, S)
            positions = _positions(mask)[:, lo - self.start :]  # (B, T)
        if self.memory is not None:
            memory = self.memory if cache is None or not cache.cross else None  # cached: keys/values of step one
            out = self.model.decode(
                self.ids[:, lo:hi], memory, self.memory_mask, cache=cache, positions=positions, last_only=True
            )
        else:
            out = self.model(self.ids[:, lo:hi], cache=cache, positions=positions, attention_mask=mask, last_only=True)
        return getattr(out, "logits", out)[:, -1]  # a logits tensor, or a ModelOutput's logits

    def next_logits(self) -> torch.Tensor:
        """Logits (rows, V) for the next token of every row."""
        logits = self._next_logits()
        if self.copies > 1:  # the prompts ran once: give each its copies
            n, self.copies = self.copies, 1
            self.ids = self.ids.repeat_interleave(n, dim=0)  # (B n, total)
            if self.mask is not None:
                self.mask = self.mask.repeat_interleave(n, dim=0)
            if self.cache is not None:
                self.cache.repeat_rows(n)
            if self.memory is not None:
                self.memory = self.memory.repeat_interleave(n, dim=0)  # (B n, S, C)
                if self.memory_mask is not None:
                    self.memory_mask = self.memory_mask.repeat_interleave(n, dim=0)
            logits = logits.repeat_interleave(n, dim=0)  # (B n, V)
        return logits

    def _next_logits(self) -> torch.Tensor:
        start = max(0, self.length - self.block)
        if self.cache is None:
            self.start = start
            return self._run(start, self.length, None)
        if start != self.start or self.cache.length == 0:
            self.start = start
            self.cache.reset()
            return self._run(start, self.length, self.cache)  # prefill
        return self._run(self.length - 1, self.length, self.cache)  # one new token

    def push(self, tokens: torch.Tensor) -> None:
        self.ids[:, self.length] = tokens
        self.length += 1

    def reorder(self, index: torch.Tensor) -> None:
        """Select rows among the copies of each prompt (beam search): copies share one memory,
        so the memory and the cross-attention keys/values stay as they are."""
        self.ids = self.ids.index_select(0, index)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index, cross=False)


def _runner(model: nn.Module, prompts: list[list[int]], cfg: GenerationConfig, copies: int) -> tuple[_Runner, int]:
    """The runner for checked prompts, and the number of prompts. An encoder-decoder model
    encodes its (right-padded) sources here, once."""
    if getattr(model, "is_encoder_decoder", False):
        if hasattr(model, "encode_inputs"):  # inputs that are not token ids (an image captioner's images)
            _sources([[0]], cfg, model.config.block_size)  # the same checks of the decoder's room
            memory, src_mask = model.encode_inputs(prompts)  # (B, S, C), (B, S) or None
        else:
            prompts = _sources(prompts, cfg, model.config.block_size)
            device = next(model.parameters()).device
            src, src_mask = right_pad(prompts, model.config.pad_id)
            src, src_mask = src.to(device), (src_mask.to(device) if src_mask is not None else None)
            memory = model.encode(src, src_mask)  # (B, S, C)
        start = torch.full((len(prompts), 1), model.config.decoder_start_id, dtype=torch.long)
        return _Runner(model, start, None, cfg, copies, memory, src_mask), len(prompts)
    prompts = _prompts(prompts, cfg, model.config.block_size)
    ids, mask = left_pad(prompts)
    return _Runner(model, ids, mask, cfg, copies), len(prompts)


@torch.no_grad()
def sample_tokens(model: nn.Module, prompts: list[list[int]], cfg: GenerationConfig) -> Iterator[_Step]:
    """Greedy or sampled decoding, one :class:`_Step` per new token for every row.

    Rows are prompt-major: row r is prompt r // num_return_sequences.
    """
    cfg.check()
    runner, n_prompts = _runner(model, prompts, cfg, copies=cfg.num_return_sequences)
    B = n_prompts * cfg.num_return_sequences
    device = runner.device
    gen = torch.Generator(device=device)
    if cfg.seed is not None:
        gen.manual_seed(cfg.seed)
    else:
        gen.seed()
    done = torch.zeros(B, dtype=torch.bool, device=device)
    penalties = cfg.repetition_penalty != 1.0 or cfg.frequency_penalty != 0.0 or cfg.presence_penalty != 0.0
    counts = seen = None  # (B, V) token counts of the generation / tokens in the context, for penalties only
    for _ in range(cfg.max_new_tokens):
        logits = runner.next_logits().float()  # (B, V)
        V = logits.size(-1)
        if penalties and seen is None:
            counts = torch.zeros(B, V, device=device)
            seen = torch.zeros(B, V, dtype=torch.bool, device=device)
            real = runner.ids[:, : runner.length]
            weights = runner.mask[:, : runner.length] if runner.mask is not None else torch.ones_like(real)
            seen.scatter_(1, real, weights.bool())
        z = P.ban(logits, cfg.banned_tokens)
        if penalties:
            z = P.repetition_penalty(z, seen, cfg.repetition_penalty)
            z = P.frequency_presence_penalty(z, counts, cfg.frequency_penalty, cfg.presence_penalty)
        tokens = P.sample_next(z, cfg.temperature, cfg.top_k, cfg.top_p, gen, cfg.min_p)
        if cfg.eos_id is not None:
            tokens = torch.where(done, torch.full_like(tokens, cfg.eos_id), tokens)
        out = _Step(tokens=tokens)
        if cfg.logprobs or cfg.top_logprobs:
            logp = torch.log_softmax(logits, dim=-1)
            out.logprobs = logp.gather(1, tokens[:, None]).squeeze(1)
            if cfg.top_logprobs:
                out.top = torch.topk(logp, min(cfg.top_logprobs, V), dim=-1)
        if penalties:
            counts.scatter_add_(1, tokens[:, None], torch.ones(B, 1, device=device))
            seen.scatter_(1, tokens[:, None], True)
        if cfg.eos_id is not None:
            done = done | (tokens == cfg.eos_id)
        yield out
        runner.push(tokens)
        if bool(done.all()):
            return


# --- beam search --------------------------------------------------------------------------


@torch.no_grad()
def beam_search(model: nn.Module, prompts: list[list[int]], cfg: GenerationConfig) -> list[list[Generation]]:
    """Beam search with a length penalty; returns the n best hypotheses of each prompt.

    The rule of fairseq and of Hugging Face ``generate(num_beams=K, early_stopping=False)``
    (transformers 5), so that both give the same hypotheses: every step extends each of the
    K live beams by every token and ranks the 2K best candidates by total log-probability.

    - A candidate ranked among the first K that ends in EOS is finished, scored
      sum log p / length ** length_penalty (length counts the EOS). At the last step
      (max_new_tokens) every candidate among the first K is finished the same way.
    - The K best candidates that do not end in EOS are the next live beams.
    - A prompt is closed (takes no more hypotheses) once it holds K finished ones and the best
      live beam, scored at its current length, cannot beat the worst of them.
    """
    cfg.check()
    K = cfg.num_beams
    runner, n_prompts = _runner(model, prompts, cfg, copies=K)
    device = runner.device
    scores = torch.full((n_prompts, K), -math.inf, device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first may extend at step 0
    history = torch.zeros(n_prompts * K, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int], str]]] = [[] for _ in range(n_prompts)]
    closed = [False] * n_prompts

    def norm(score: float, length: int) -> float:
        return score / (max(length, 1) ** cfg.length_penalty)

    for step in range(cfg.max_new_tokens):
        last = step == cfg.max_new_tokens - 1
        logits = runner.next_logits().float()
        logp = torch.log_softmax(P.ban(logits, cfg.banned_tokens), dim=-1)  # (nK, V)
        V = logp.size(-1)
        cand = (scores[:, :, None] + logp.view(n_prompts, K, V)).view(n_prompts, K * V)
        top_scores, top_idx = torch.topk(cand, min(2 * K, K * V), dim=-1)  # (n, 2K)
        beam_of, token_of = top_idx // V, top_idx % V
        new_scores = torch.full_like(scores, -math.inf)
        rows = torch.arange(n_prompts * K, device=device).view(n_prompts, K) // K * K  # dead beams: any row
        tokens = torch.zeros(n_prompts, K, dtype=torch.long, device=device)
        ts, bs, ks = top_scores.tolist(), beam_of.tolist(), token_of.tolist()
        for i in range(n_prompts):
            if closed[i]:
                continue
            live = 0
            for rank, (sc, b, tok) in enumerate(zip(ts[i], bs[i], ks[i])):
                if sc == -math.inf:
                    break
                row = i * K + b
                eos = cfg.eos_id is not None and tok == cfg.eos_id
                if rank < K and (eos or last):
                    finished[i].append((norm(sc, step + 1), history[row].tolist() + [tok], "eos" if eos else "length"))
                if not eos and live < K:
                    new_scores[i, live], rows[i, live], tokens[i, live] = sc, row, tok
                    live += 1
            finished[i].sort(key=lambda h: -h[0])
            finished[i] = finished[i][:K]
            if len(finished[i]) >= K and finished[i][-1][0] >= norm(new_scores[i, 0].item(), step + 1):
                closed[i] = True
        if all(closed) or last:
            break
        index = rows.flatten()
        scores = new_scores
        history = torch.cat([history.index_select(0, index), tokens.flatten()[:, None]], dim=1)
        runner.reorder(index)
        runner.push(tokens.flatten())
    results = []
    for i in range(n_prompts):
        hyps = list(finished[i])
        if not hyps:  # nothing finished (every candidate was -inf): the live beams as they are
            hyps = [
                (norm(scores[i, b].item(), history.size(1)), history[i * K + b].tolist(), "length") for b in range(K)
            ]
        hyps.sort(key=lambda h: -h[0])
        results.append(
            [
                Generation(tokens=t, finish_reason=r, score=s, prompt_index=i)
                for s, t, r in hyps[: cfg.num_return_sequences]
            ]
        )
    return results


# --- text: stop strings, streaming --------------------------------------------------------


class TextTracker:
    """Turns a growing token list into text pieces that are safe to show.

    A piece never ends inside a UTF-8 character (a byte-level token may carry half of one;
    the decoder shows it as U+FFFD until the rest arrives) and never holds the beginning of
    a stop string that may still complete. When a stop string appears, the text is cut
    before it.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: tuple[str, ...] = ()):
        self.decode, self.stop = decode, tuple(s for s in stop if s)
        self.tokens: list[int] = []
        self.emitted = ""
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a token; return the new text that can be shown now."""
        self.tokens.append(token)
        text = self.decode(self.tokens)
        for s in self.stop:
            at = text.find(s)
            if at != -1:
                self.stopped = True
                text = text[:at]
                break
        if self.stopped:
            return self._emit(text)
        safe = len(text)
        while safe > 0 and text[safe - 1] == "\ufffd":
            safe -= 1
        for s in self.stop:  # hold a suffix that is a prefix of a stop string
            for n in range(min(len(s) - 1, safe), 0, -1):
                if text[safe - n : safe] == s[:n]:
                    safe -= n
                    break
        return self._emit(text[:safe])

    def finish(self) -> str:
        """Whatever is left at the end of generation."""
        text = self.decode(self.tokens)
        if self.stopped:
            return ""
        return self._emit(text)

    def _emit(self, text: str) -> str:
        if len(text) <= len(self.emitted):
            return ""
        piece = text[len(self.emitted) :]
        self.emitted = text
        return piece


def generate(
    model: nn.Module,
    prompts: list[list[int]],
    cfg: GenerationConfig,
    decode: Callable[[list[int]], str] | None = None,
) -> list[list[Generation]]:
    """Generate for each prompt; returns ``num_return_sequences`` generations per prompt.

    With ``decode`` (token ids -> text) the generations carry text and honour ``cfg.stop``.
    """
    if cfg.num_beams > 1:
        out = beam_search(model, prompts, cfg)
        if decode is not None:
            for gens in out:
                for g in gens:
                    g.text, cut = _cut_at_stop(decode(g.tokens), cfg.stop)
                    g.finish_reason = "stop" if cut else g.finish_reason
        return out
    n = cfg.num_return_sequences
    rows = len(prompts) * n
    gens = [Generation(tokens=[], finish_reason="length", prompt_index=r // n) for r in range(rows)]
    trackers = [TextTracker(decode, cfg.stop) for _ in range(rows)] if decode is not None and cfg.stop else None
    active = [True] * rows
    for step in sample_tokens(model, prompts, cfg):
        toks = step.tokens.tolist()
        lps = step.logprobs.tolist() if step.logprobs is not None else None
        tops = (step.top[0].tolist(), step.top[1].tolist()) if step.top is not None else None
        for r in range(rows):
            if not active[r]:
                continue
            g = gens[r]
            if cfg.eos_id is not None and toks[r] == cfg.eos_id:
                g.finish_reason, active[r] = "eos", False
                continue
            g.tokens.append(toks[r])
            if lps is not None:
                g.logprobs = (g.logprobs or []) + [lps[r]]
            if tops is not None:
                g.top_logprobs = (g.top_logprobs or []) + [list(zip(tops[1][r], tops[0][r]))]
            if trackers is not None:
                trackers[r].push(toks[r])
                if trackers[r].stopped:
                    g.finish_reason, active[r] = "stop", False
        if not any(active):
            break
    out: list[list[Generation]] = [[] for _ in prompts]
    for g in gens:
        if decode is not None:
            g.text, cut = _cut_at_stop(decode(g.tokens), cfg.stop)
            if cut:
                g.finish_reason = "stop"
        out[g.prompt_index].append(g)
    return out


def stream(
    model: nn.Module, prompt: list[int], cfg: GenerationConfig, decode: Callable[[list[int]], str]
) -> Iterator[str]:
    """Yield text pieces of one sampled continuation as they are generated (valid UTF-8,
    stop strings excluded). The pieces concatenate to the full generation's text."""
    if cfg.num_beams > 1:
        raise ConfigError("streaming works with greedy or sampled decoding, not beam search")
    tracker = TextTracker(decode, cfg.stop)
    for step in sample_tokens(model, [prompt], replace(cfg, num_return_sequences=1)):
        token = int(step.tokens[0])
        if cfg.eos_id is not None and token == cfg.eos_id:
            break
        piece = tracker.push(token)
        if piece:
            yield piece
        if tracker.stopped:
            return
    rest = tracker.finish()
    if rest:
        yield rest


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    hits = [text.find(s) for s in stop if s and s in text]
    if not hits:
        return text, False
    return text[: min(hits)], True
