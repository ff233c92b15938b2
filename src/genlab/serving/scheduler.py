"""Continuous batching: one decode loop per model, requests join and leave between steps.

Iteration-level scheduling (Orca: Yu et al., OSDI 2022): the batch is re-formed at every
decoding step instead of once per batch of requests. A request that arrives while others
are decoding waits at most one step before its prompt is prefilled, and a finished (or
abandoned) sequence leaves at once, so short answers never wait for long ones.

Axes: L layers, B rows (running sequences), H key/value heads, S cache positions, D head dim,
V vocab.

The engine owns one :class:`~genlab.layers.kv_cache.KVCache` of ``max_batch`` rows (one slot
per sequence), allocated once for the model's whole context. Running sequences always sit in
rows 0..B-1: a step feeds each one its last token through a view of those B rows, where the
rows have different lengths (the cache's ragged path: each row writes at its own length and
attends over its own past only, so batching never mixes rows). When a sequence leaves, the
last running row moves into its slot (a copy of its filled positions), keeping the rows
packed.

Each loop iteration:

1. drops the sequences of cancelled requests (a client that disconnected);
2. admits waiting requests (oldest first) while their sequences fit in the free slots and
   their prompts in a budget of ``prefill_tokens`` padded tokens (the oldest always): the
   prompts run as one left-padded batch, each row is copied into its request's ``n`` free
   slots (a prompt runs once for ``n`` samples), and the first tokens are sampled from it;
3. runs one decoding step for every running sequence and hands each new token to its request.

The prefill budget bounds the stall new prompts cost the running streams to one forward pass
of at most ``prefill_tokens`` tokens (or one prompt, when a single prompt is longer). Waiting
requests form a bounded queue: past ``max_queue`` :meth:`Engine.submit` raises
:class:`QueueFull` (HTTP 429).

Each sequence samples with its own ``torch.Generator`` (seeded ``seed + i`` for the i-th of
``n`` samples when the request gives a seed), so a seeded request gives the same text however
it is batched. Sampling reuses :mod:`genlab.generation.processors`, in the order of
:func:`genlab.generation.decode.sample_tokens`: penalties, then temperature, top-k, top-p, min-p.
Log-probabilities are those of the model (before any processor), as ``genlab sample`` reports.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError, GenlabError
from genlab.generation import processors as P
from genlab.generation.decode import TextTracker, left_pad
from genlab.layers.kv_cache import KVCache
from genlab.serving.metrics import Histogram

MIN_TEMPERATURE = 1e-4  # below it sampling is greedy (float32 logits / t would overflow)


class QueueFull(GenlabError):
    """The engine's queue of waiting requests is full (HTTP 429)."""


@dataclass
class SamplingParams:
    """What one request asks for; every sequence of the request shares it."""

    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None  # None: no log-probabilities; k >= 0: the chosen token's and k alternatives

    def check(self) -> None:
        P.check_sampling(self.temperature, self.top_k, self.top_p, self.min_p)
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0 (1 disables it), got {self.repetition_penalty}")

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0


@dataclass
class TokenInfo:
    """One generated token: its id, log-probability and the top alternatives (id, log p)."""

    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


@dataclass
class Event:
    """What a request's consumer receives: new text of sequence ``index`` and the tokens behind
    it; the last event of a sequence has ``finish_reason`` ("stop" or "length")."""

    index: int
    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None  # the engine failed (a bug, never the client's input)


class Request:
    """A prompt, its sampling parameters and ``n``: the handle an HTTP handler holds.

    Created on the event loop that will consume it; the engine thread hands events over
    through ``loop.call_soon_threadsafe``, once per loop and step (:func:`_deliver_all`).
    """

    def __init__(
        self,
        prompt: list[int],
        params: SamplingParams,
        n: int = 1,
        queue: asyncio.Queue | None = None,
        offset: int = 0,
    ):
        if not prompt:
            raise ConfigError("the prompt has no tokens")
        params.check()
        self.prompt, self.params, self.n = list(prompt), params, n
        self.loop = asyncio.get_running_loop()
        # Several requests (the prompts of one HTTP call) may share a queue: their events are
        # numbered offset + i, i the sequence's index within its request.
        self.queue: asyncio.Queue[Event] = queue if queue is not None else asyncio.Queue()
        self.offset = offset
        self.cancelled = False
        self.submitted = time.perf_counter()
        self.first_token: float | None = None  # when the first token was sampled (perf_counter)
        self.completion_tokens = 0
        self._open = n  # sequences not finished yet

    def cancel(self) -> None:
        """The client went away: the engine frees this request's slots before its next step."""
        self.cancelled = True

    @property
    def finished(self) -> bool:
        return self._open == 0

    async def events(self) -> AsyncIterator[Event]:
        """Events until every sequence has finished (or an engine error); for a queue of its own."""
        open_ = self.n
        while open_:
            event = await self.queue.get()
            if event.error is not None:
                yield event
                return
            if event.finish_reason is not None:
                open_ -= 1
            yield event


def _deliver(batch: list[tuple[Request, Event]]) -> None:  # event loop thread
    for req, event in batch:
        req.queue.put_nowait(event)


def _deliver_all(batch: list[tuple[Request, Event]]) -> None:  # engine thread
    """Hand events to their requests' event loops: one wake-up per loop for the whole batch
    (a step's events for 16 streams cost one ``call_soon_threadsafe``, not 16)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Request, Event]]] = {}
    for req, event in batch:
        by_loop.setdefault(req.loop, []).append((req, event))
    for loop, events in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, events)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for req, _ in events:
                req.cancelled = True


class _Seq:
    """One running sequence: a slot of the cache and its sampling state."""

    def __init__(self, req: Request, index: int, vocab: int, device, decode: Callable[[list[int]], str]):
        self.req, self.index = req, index
        self.out = req.offset + index  # the index its events carry
        self.params = p = req.params
        self.row = -1
        self.length = len(req.prompt)  # tokens in its cache row
        self.last = -1  # the newest token, fed at the next step
        self.tokens: list[int] = []
        self.tracker = TextTracker(decode, p.stop)
        self.gen = torch.Generator(device=device)
        if p.seed is not None:
            self.gen.manual_seed(p.seed + index)
        else:
            self.gen.seed()
        self.counts = self.seen = None
        if p.penalised:
            self.counts = torch.zeros(1, vocab, device=device)  # (1, V) occurrences in the generation
            self.seen = torch.zeros(1, vocab, dtype=torch.bool, device=device)  # (1, V) in prompt or generation
            self.seen[0, torch.tensor(req.prompt, device=device)] = True

    @property
    def plain_greedy(self) -> bool:
        return self.params.temperature == 0 and self.counts is None

    def choose(self, logits: torch.Tensor) -> int:
        """(1, V) float logits of the next position -> the next token id."""
        p, z = self.params, logits
        if self.counts is not None:
            z = P.repetition_penalty(z, self.seen, p.repetition_penalty)
            z = P.frequency_presence_penalty(z, self.counts, p.frequency_penalty, p.presence_penalty)
        if p.temperature < MIN_TEMPERATURE:  # z / t overflows to inf: the limit t -> 0 is greedy
            return int(z.argmax(dim=-1)[0])
        return int(P.sample_next(z, p.temperature, p.top_k, p.top_p, self.gen, p.min_p)[0])

    def record(self, token: int) -> None:
        if self.counts is not None:
            self.counts[0, token] += 1
            self.seen[0, token] = True


@dataclass
class EngineStats:
    """Counters the server's /metrics reads (the engine thread writes them)."""

    requests: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    steps: int = 0
    running: int = 0  # sequences in the batch now
    waiting: int = 0  # requests in the queue now
    ttft: Histogram = field(default_factory=Histogram)  # seconds from submit to the first token


class Engine:
    """The decode loop of one model (module docstring). Start it with :meth:`start`."""

    def __init__(
        self,
        model: nn.Module,
        decode: Callable[[list[int]], str],
        eos_id: int | None,
        max_batch: int = 16,
        max_queue: int = 64,
        prefill_tokens: int = 512,
    ):
        if max_batch < 1 or max_queue < 0:
            raise ConfigError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch} and {max_queue}")
        self.model, self.decode, self.eos_id = model.eval(), decode, eos_id
        self.block_size = model.config.block_size
        self.vocab = model.config.vocab_size
        self.max_batch, self.max_queue = max_batch, max_queue
        self.prefill_tokens = prefill_tokens  # padded prompt tokens one step may prefill
        self.device = next(model.parameters()).device
        self.cache: KVCache = model.make_cache(max_batch, self.block_size)  # (L, max_batch, H, S, D)
        self.rows: list[_Seq] = []  # row i of the cache holds rows[i]; engine thread only
        self.pending: deque[Request] = deque()
        self.cond = threading.Condition()
        self.stats = EngineStats()
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- the public side (event loop threads) ---------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="genlab-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, req: Request) -> None:
        """Queue a request; QueueFull past ``max_queue`` waiting requests."""
        if req.n > self.max_batch:
            raise ConfigError(f"n={req.n} exceeds the {self.max_batch} sequences this model runs at once")
        if len(req.prompt) + req.params.max_tokens > self.block_size:
            raise ConfigError(
                f"prompt ({len(req.prompt)} tokens) + max_tokens ({req.params.max_tokens}) exceeds the context "
                f"of {self.block_size} tokens"
            )
        with self.cond:
            if len(self.pending) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting): retry later")
            self.pending.append(req)
            self.stats.requests += 1
            self.stats.waiting = len(self.pending)
            self.cond.notify()

    def wake(self) -> None:
        """Let the loop notice a cancellation now (it also checks before every step)."""
        with self.cond:
            self.cond.notify()

    @property
    def idle(self) -> bool:
        return not self.rows and not self.pending

    # --- the loop (engine thread) ---------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cond:
                    while not self._stop and not self.pending and not self.rows:
                        self.cond.wait()
                    if self._stop:
                        return
                try:
                    self._drop_cancelled()
                    self._admit()
                    if self.rows:
                        self._step()
                except Exception as e:  # a bug: fail the running requests, keep serving
                    message = f"internal error in the decode loop: {type(e).__name__}: {e}"
                    _deliver_all([(seq.req, Event(index=seq.out, error=message)) for seq in self.rows])
                    self.rows.clear()
                self.stats.running = len(self.rows)

    def _drop_cancelled(self) -> None:
        with self.cond:
            if any(r.cancelled for r in self.pending):
                self.pending = deque(r for r in self.pending if not r.cancelled)
                self.stats.waiting = len(self.pending)
        for seq in [s for s in self.rows if s.req.cancelled]:
            self._remove(seq)

    def _admit(self) -> None:
        """Prefill waiting requests, oldest first, while their sequences fit in the free slots and
        their padded prompts in ``prefill_tokens`` (the oldest one always, if it fits)."""
        with self.cond:
            reqs: list[Request] = []
            free, width = self.max_batch - len(self.rows), 0
            while self.pending and self.pending[0].n <= free:
                w = max(width, len(self.pending[0].prompt))
                if reqs and w * (len(reqs) + 1) > self.prefill_tokens:
                    break
                reqs.append(self.pending.popleft())
                free -= reqs[-1].n
                width = w
            self.stats.waiting = len(self.pending)
        if reqs:
            self._prefill(reqs)

    def _prefill(self, reqs: list[Request]) -> None:
        """Run the prompts in one left-padded batch, copy each row into its requests' n slots.

        Left padding puts every prompt's last token in the last column (``last_only``), with
        positions counting real tokens and the mask hiding the padding, so each row computes
        what it would alone (as :mod:`genlab.generation.decode` batches prompts). A row's keys
        then sit at columns W - P_i .. W - 1 of the prefill cache; they move to 0 .. P_i - 1 of
        their slots, where the engine's rows start.
        """
        ids, mask = left_pad([r.prompt for r in reqs])  # (k, W), (k, W) or None
        ids = ids.to(self.device)
        positions = None
        if mask is not None:
            mask = mask.to(self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (k, W) real tokens counted from 0
        W = ids.size(1)
        pre = self.model.make_cache(len(reqs), W)  # (L, k, H, W, D)
        out = self.model(ids, cache=pre, positions=positions, attention_mask=mask, last_only=True)
        logits = getattr(out, "logits", out)[:, -1].float()  # (k, V)
        seqs, rows = [], []
        for i, req in enumerate(reqs):
            P_i = len(req.prompt)
            for j in range(req.n):
                slot = len(self.rows)
                self.cache.k[:, slot, :, :P_i] = pre.k[:, i, :, W - P_i :]
                self.cache.v[:, slot, :, :P_i] = pre.v[:, i, :, W - P_i :]
                self.cache.lengths[slot] = P_i
                seq = _Seq(req, j, self.vocab, self.device, self.decode)
                seq.row = slot
                self.rows.append(seq)
                seqs.append(seq)
                rows.append(i)
            self.stats.prompt_tokens += P_i
        self._advance(seqs, logits[rows])

    def _view(self, n: int) -> KVCache:
        """A cache over rows 0..n-1 that writes into the engine's cache."""
        view = copy.copy(self.cache)
        view.k, view.v = self.cache.k[:, :n], self.cache.v[:, :n]  # (L, n, H, S, D) views
        view.lengths = self.cache.lengths[:n]  # (n,) a view: advance() updates the engine's lengths
        view._sync()
        return view

    def _step(self) -> None:
        """One token for every running sequence."""
        n = len(self.rows)
        last = torch.tensor([[s.last] for s in self.rows], dtype=torch.long, device=self.device)  # (n, 1)
        logits = self.model(last, cache=self._view(n), last_only=True)  # (n, 1, V)
        logits = getattr(logits, "logits", logits)[:, -1].float()  # (n, V)
        for s in self.rows:
            s.length += 1
        self.stats.steps += 1
        self._advance(list(self.rows), logits)

    def _advance(self, seqs: list[_Seq], logits: torch.Tensor) -> None:
        """Choose each sequence's next token from its row of ``logits`` (len(seqs), V), hand it to
        its request, and retire the sequences that finished."""
        tokens = logits.argmax(dim=-1).tolist()
        for i, seq in enumerate(seqs):
            if not seq.plain_greedy:
                tokens[i] = seq.choose(logits[i : i + 1])
        want = [i for i, s in enumerate(seqs) if s.params.logprobs is not None]
        infos = {}
        if want:
            logp = torch.log_softmax(logits[want], dim=-1)  # (w, V)
            chosen = logp.gather(1, torch.tensor([[tokens[i]] for i in want], device=logp.device))[:, 0].tolist()
            k = max(seqs[i].params.logprobs for i in want)
            top_v, top_i = torch.topk(logp, min(k, logp.size(-1)), dim=-1) if k else (None, None)
            for j, i in enumerate(want):
                kk = seqs[i].params.logprobs
                top = list(zip(top_i[j, :kk].tolist(), top_v[j, :kk].tolist())) if kk else []
                infos[i] = TokenInfo(tokens[i], chosen[j], top)
        now = time.perf_counter()
        done, events = [], []
        for i, seq in enumerate(seqs):
            req, token = seq.req, tokens[i]
            if req.first_token is None:
                req.first_token = now
                self.stats.ttft.observe(now - req.submitted)
            self.stats.generation_tokens += 1
            if self.eos_id is not None and token == self.eos_id:
                done.append(seq)
                events.append((req, Event(seq.out, seq.tracker.finish(), [], "stop")))
                continue
            seq.record(token)
            seq.tokens.append(token)
            seq.last = token
            req.completion_tokens += 1
            text = seq.tracker.push(token)
            info = [infos.get(i) or TokenInfo(token)]
            if seq.tracker.stopped:
                done.append(seq)
                events.append((req, Event(seq.out, text, info, "stop")))
            elif len(seq.tokens) >= seq.params.max_tokens or seq.length + 1 > self.block_size:
                done.append(seq)
                events.append((req, Event(seq.out, text + seq.tracker.finish(), info, "length")))
            else:
                events.append((req, Event(seq.out, text, info)))
        _deliver_all(events)
        for seq in done:
            seq.req._open -= 1
            self._remove(seq)

    def _remove(self, seq: _Seq) -> None:
        """Free ``seq``'s slot: the last running row moves into it (rows stay packed)."""
        r, last = seq.row, len(self.rows) - 1
        if r < 0 or r > last or self.rows[r] is not seq:
            return
        if r != last:
            moved = self.rows[last]
            m = moved.length
            self.cache.k[:, r, :, :m] = self.cache.k[:, last, :, :m]
            self.cache.v[:, r, :, :m] = self.cache.v[:, last, :, :m]
            self.cache.lengths[r] = self.cache.lengths[last]
            self.rows[r], moved.row = moved, r
        self.rows.pop()
        seq.row = -1
