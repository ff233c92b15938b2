"""GPT: a decoder-only Transformer language model.

Radford et al. 2018 (GPT-1), 2019 (GPT-2), Brown et al. 2020 (GPT-3, arXiv:2005.14165).

Axes: B batch, T time, C model dim (n_embd), H heads, D head dim (C / H), V vocab.

    h_0 = E[ids] + P[positions]                       token + learned position embeddings
    h_l = h_{l-1} + Attn(LN(h_{l-1}))                  pre-norm residual blocks (GPT-2)
    h_l = h_l + MLP(LN(h_l))
    logits = LN(h_L) W_E^T                            output head, tied to E by default

Variants are config fields resolved through visible dicts in ``layers/``:
``pos`` (learned / sinusoidal / rope / alibi / none), ``mlp`` (gelu / gelu_tanh / relu / swiglu),
``norm`` (layernorm / rmsnorm), ``attention`` (any backend of ``layers.attention.ATTENTION``).
``n_kv_head`` < ``n_head`` shares each key/value head among n_head / n_kv_head query heads
(grouped-query attention, Ainslie et al. 2023, arXiv:2305.13245; n_kv_head = 1 is multi-query
attention, Shazeer 2019, arXiv:1911.02150): fewer parameters and a smaller KV cache.
``pos="alibi"`` adds no position embedding; each layer's attention scores get the ALiBi bias
-m_h (i - j) instead (Press et al. 2021, arXiv:2108.12409).
``attention="longformer"`` (a causal sliding window of ``attention_window`` keys back, KV-cache
decoding included) or ``"lsh"`` (Reformer's hashed attention; decoding re-hashes the cache) swaps the attention
module (``layers/efficient``); ``reversible=True`` runs the blocks as reversible residuals
(y1 = x1 + Attn(LN(x2)), y2 = x2 + MLP(LN(y1)), out (y1 + y2) / 2), recomputed in backward.
``moe`` (a :class:`~genlab.layers.moe.MoEConfig`; off by default) makes every ``moe.every``-th
layer's FFN a mixture of experts (Mixtral, DeepSeekMoE): ``model.moe.num_experts=8
model.moe.top_k=2``. Such a model returns a :class:`ModelOutput` whose ``aux_loss`` is the
sum of its MoE layers' balancing losses, which the training engine adds to the loss.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from genlab.core.registry import register
from genlab.layers.attention import ATTENTION, MultiHeadAttention, padding_mask
from genlab.layers.efficient import EFFICIENT_ATTENTION, check_efficient, efficient_attention, options
from genlab.layers.efficient.reversible import RevLayer, reversible
from genlab.layers.kv_cache import KVCache
from genlab.layers.linear import Linear, prepare_decode
from genlab.layers.mlp import MLP_KINDS, make_mlp
from genlab.layers.moe import MoE, MoEConfig
from genlab.layers.norm import NORM_KINDS, make_norm
from genlab.layers.positional import ALiBi, Rotary, sinusoidal_table
from genlab.models.outputs import ModelOutput

POSITIONS = ["learned", "sinusoidal", "rope", "alibi", "none"]


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # context length
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int = 0  # key/value heads; 0 means n_head (multi-head attention)
    n_embd: int = 768
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    bias: bool = True
    pos: str = "learned"
    mlp: str = "gelu"
    norm: str = "layernorm"
    attention: str = "sdpa"
    # Efficient attention (layers/efficient), read when attention is longformer or lsh:
    attention_window: int = 256  # longformer: each token sees itself and the w before it
    attention_dilation: int = 1  # longformer: every d-th of them
    linformer_k: int = 256  # linformer is bidirectional: defined for BERT, not here
    linformer_share: str = "none"
    lsh_buckets: int = 32
    lsh_rounds: int = 4
    lsh_chunk: int = 64
    reversible: bool = False  # reversible residuals (Reformer): activation memory flat in depth
    ff_chunks: int = 1  # with reversible: the MLP runs over this many slices of time
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    init_std: float = 0.02
    moe: MoEConfig = dataclasses.field(default_factory=MoEConfig)  # mixture of experts; num_experts=0: none

    def __post_init__(self):
        if isinstance(self.moe, dict):
            self.moe = MoEConfig(**self.moe)
        attention = sorted(ATTENTION) + sorted(EFFICIENT_ATTENTION)
        checks = {"pos": POSITIONS, "mlp": MLP_KINDS, "norm": NORM_KINDS, "attention": attention}
        for field, valid in checks.items():
            if getattr(self, field) not in valid:
                raise ValueError(f"{field}='{getattr(self, field)}' is not one of {valid}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_kv_head < 0:
            raise ValueError(f"n_kv_head={self.n_kv_head} must be >= 0 (0 means n_head)")
        if self.n_kv_head and self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        check_efficient(
            self.attention, options(self), causal=True, family="GPT", n_kv_head=self.n_kv_head, n_head=self.n_head,
            pos=self.pos,
        )  # fmt: skip
        if self.ff_chunks < 1:
            raise ValueError(f"ff_chunks={self.ff_chunks} must be at least 1")
        if self.reversible and self.moe.num_experts:
            # The reversible backward recomputes each block, so the MoE balancing loss of the forward
            # would carry no gradient to the routers.
            raise ValueError("reversible=true does not combine with moe (its balancing loss needs the forward's graph)")

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when it is 0."""
        return self.n_kv_head or self.n_head


class Block(nn.Module):
    """One pre-norm Transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln1 = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        if cfg.attention in EFFICIENT_ATTENTION:
            self.attn = efficient_attention(
                cfg.attention, cfg.n_embd, cfg.n_head, causal=True, seq_len=cfg.block_size,
                n_kv_head=cfg.kv_heads, bias=cfg.bias, dropout=cfg.dropout, **options(cfg),
            )  # fmt: skip
        else:
            self.attn = MultiHeadAttention(
                cfg.n_embd,
                cfg.n_head,
                cfg.kv_heads,
                bias=cfg.bias,
                dropout=cfg.dropout,
                backend=cfg.attention,
                causal=True,
            )
        self.ln2 = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        hidden = int(cfg.mlp_ratio * cfg.n_embd)
        if cfg.moe.is_moe_layer(layer):
            self.mlp = MoE(cfg.n_embd, hidden, cfg.moe, cfg.mlp, cfg.bias, cfg.dropout)
        else:
            self.mlp = make_mlp(cfg.mlp, cfg.n_embd, hidden, cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor, rotary=None, mask=None, cache: KVCache | None = None, layer: int = 0, bias=None):
        x = x + self.attn(self.ln1(x), mask=mask, rotary=rotary, cache=cache, layer=layer, bias=bias)
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.pos == "learned":
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        elif cfg.pos == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(cfg.block_size, cfg.n_embd), persistent=False)
        self.rotary = Rotary(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_theta) if cfg.pos == "rope" else None
        self.alibi = ALiBi(cfg.n_head) if cfg.pos == "alibi" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.head = Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        self.reset_parameters()

    @property
    def moe_layers(self) -> list[MoE]:
        """The blocks' mixture-of-experts FFNs (empty for a dense model)."""
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoE)]

    def shard_units(self) -> list[nn.Module]:
        """What FSDP shards one group at a time (training/parallel.py): each block."""
        return list(self.blocks)

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 L)."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2 or name.endswith(".bias"):  # MoE experts' biases are (E, out)
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                else:
                    nn.init.ones_(p)
            elif name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.n_layer))
            else:
                nn.init.normal_(p, 0.0, std)

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        last_only: bool = False,
        hidden_states: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor | ModelOutput:
        """idx: (B, T) token ids -> logits (B, T, V), or (B, 1, V) with ``last_only``.
        With ``hidden_states`` a :class:`ModelOutput` with the residual stream after the
        embeddings and after each block (n_layer + 1 tensors of (B, T, C)) beside the logits.
        A model with MoE layers always returns a :class:`ModelOutput`, with their summed ``aux_loss``.

        Decoding passes a ``cache`` (see :meth:`make_cache`): the T new tokens take the
        positions after those already cached. Left-padded batches pass ``positions`` (B, T)
        and ``attention_mask`` (B, S) with 0 at padding, S = cached + T. A cache whose rows
        have different lengths (continuous batching) places each row's tokens after its own
        past and hides the rest.

        ``inputs_embeds`` (B, T, C) replaces the token embeddings E[idx] (the positions are added
        as usual): how a model that embeds other inputs itself (Gato's image patches) feeds the GPT.
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context of {self.config.block_size}")
        ragged = cache is not None and not cache.uniform  # rows of different lengths
        cols = None  # column of each new token in its row (= cache position): (T,), or (B, T) when ragged
        if positions is None or self.alibi is not None:
            cols = cache.positions(T) if ragged else torch.arange(start, start + T, device=idx.device)
        if positions is None:
            positions = cols
        x = self.tok_emb(idx) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        if self.config.pos == "learned":
            x = x + self.pos_emb(positions)
        elif self.config.pos == "sinusoidal":
            x = x + self.pos_table[positions]
        x = self.drop(x)
        rotary = (lambda t: self.rotary(t, positions=positions)) if self.rotary is not None else None
        mask = padding_mask(attention_mask, T) if attention_mask is not None else None  # (B, 1, T, S)
        if ragged:
            own = cache.key_mask(T)  # (B, 1, T, S): each row sees its own past only
            mask = own if mask is None else mask & own
        bias = None
        if self.alibi is not None:
            # Distances between columns: left padding shifts a row's positions, not their differences.
            keys = torch.arange(start + T, device=idx.device)  # (S,)
            bias = self.alibi(cols, keys).to(x.dtype)  # (1 or B, H, T, S)
        states = [x] if hidden_states else None
        if self.config.reversible:
            x = self._reversible(x, rotary, mask, bias, cache, states)
        else:
            for i, block in enumerate(self.blocks):
                x = block(x, rotary=rotary, mask=mask, cache=cache, layer=i, bias=bias)
                if states is not None:
                    states.append(x)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1:]
        logits = self.head(self.ln_f(x))  # (B, T, V)
        moe = self.moe_layers
        aux = sum(m.aux_loss for m in moe) if moe else None
        if states is None and aux is None:
            return logits
        return ModelOutput(logits, hidden_states=tuple(states) if states is not None else None, aux_loss=aux)

    def _reversible(self, x, rotary, mask, bias, cache=None, states=None) -> torch.Tensor:
        """Reversible residuals (Gomez et al. 2017; Reformer, Kitaev et al. 2020, arXiv:2001.04451):
        x1 = x2 = x, then per block y1 = x1 + Attn(LN1(x2)), y2 = x2 + MLP(LN2(y1)); out (y1 + y2) / 2.
        Training recomputes each block in backward (layers/efficient/reversible.py); decoding with a
        cache, or collecting hidden states, runs the same equations block by block."""

        def layer(i: int, block: Block) -> RevLayer:
            def f(h, block=block, i=i):
                return block.attn(block.ln1(h), mask=mask, rotary=rotary, cache=cache, layer=i, bias=bias)

            def g(h, block=block):
                return block.mlp(block.ln2(h))

            return RevLayer(f, g, g_chunks=self.config.ff_chunks, params=list(block.parameters()))

        layers = [layer(i, b) for i, b in enumerate(self.blocks)]
        if cache is None and states is None:
            y1, y2 = reversible(x, x, layers)
            return (y1 + y2) / 2
        x1 = x2 = x
        for rl in layers:
            x1, x2 = reversible(x1, x2, [rl], recompute=False)
            if states is not None:
                states.append((x1 + x2) / 2)
        return (x1 + x2) / 2

    def make_cache(self, batch: int, max_len: int, dtype=None, device=None) -> KVCache:
        """A KV cache for ``batch`` sequences of up to ``max_len`` (<= block_size) tokens.

        Also lays out the weights for decoding (see :mod:`genlab.layers.linear`)."""
        cfg, ref = self.config, self.tok_emb.weight
        prepare_decode(self)
        return KVCache(
            cfg.n_layer,
            batch,
            cfg.kv_heads,
            cfg.n_embd // cfg.n_head,
            min(max_len, cfg.block_size),
            dtype or ref.dtype,
            device or ref.device,
        )

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.config.pos == "learned":
            n -= self.pos_emb.weight.numel()
        return n


# --- Presets -------------------------------------------------------------------------
# Small shapes for CPU work, then the published architectures.


@register("gpt-nano")
def gpt_nano() -> GPTConfig:
    """nanoGPT's CPU recipe shape: 4 layers, 4 heads, 128 dims, context 64 (char vocab)."""
    return GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)


@register("gpt-micro")
def gpt_micro() -> GPTConfig:
    """Tiny model for tests: 2 layers, 2 heads, 32 dims."""
    return GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32)


@register("gpt-char")
def gpt_char() -> GPTConfig:
    """genlab's default char-level CPU model (see recipes/configs/gpt/shakespeare-char.yaml)."""
    return GPTConfig(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=128)


@register("gpt-shakespeare")
def gpt_shakespeare() -> GPTConfig:
    """nanoGPT's GPU shakespeare-char shape: 6 layers, 6 heads, 384 dims, context 256."""
    return GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2)


@register("gpt1")
def gpt1() -> GPTConfig:
    """GPT-1 (Radford et al. 2018): 12 x 768, 12 heads, context 512, 40,478 BPE tokens, ~117M."""
    return GPTConfig(vocab_size=40478, block_size=512, n_layer=12, n_head=12, n_embd=768, mlp="gelu")


def _gpt2(n_layer: int, n_head: int, n_embd: int) -> GPTConfig:
    return GPTConfig(vocab_size=50257, block_size=1024, n_layer=n_layer, n_head=n_head, n_embd=n_embd, mlp="gelu_tanh")


register("gpt2")(lambda: _gpt2(12, 12, 768))  # 124,439,808 parameters
register("gpt2-medium")(lambda: _gpt2(24, 16, 1024))  # 355M
register("gpt2-large")(lambda: _gpt2(36, 20, 1280))  # 774M
register("gpt2-xl")(lambda: _gpt2(48, 25, 1600))  # 1.56B

# GPT-3 (Brown et al. 2020, Table 2.1): context 2048, GPT-2 vocabulary. The paper alternates
# dense and locally banded sparse attention layers; that changes no parameter count and is
# not modelled here. Two rows of the table do not multiply out: XL lists d_model 2048 with
# 24 heads of 128 (16 x 128 = 2048 is used) and 13B lists d_model 5140 with 40 heads of 128
# (5120 = 40 x 128 is used).
_GPT3 = {
    "gpt3-small": (12, 12, 768),  # 125M
    "gpt3-medium": (24, 16, 1024),  # 350M
    "gpt3-large": (24, 16, 1536),  # 760M
    "gpt3-xl": (24, 16, 2048),  # 1.3B
    "gpt3-2.7b": (32, 32, 2560),
    "gpt3-6.7b": (32, 32, 4096),
    "gpt3-13b": (40, 40, 5120),
    "gpt3-175b": (96, 96, 12288),
}
for _name, (_l, _h, _c) in _GPT3.items():
    register(_name)(
        lambda _l=_l, _h=_h, _c=_c: GPTConfig(
            vocab_size=50257, block_size=2048, n_layer=_l, n_head=_h, n_embd=_c, mlp="gelu_tanh"
        )
    )


# --- Mixture-of-experts presets ----------------------------------------------------------
# Llama-style blocks (RoPE, RMSNorm, SwiGLU, no biases, untied head) whose FFNs are MoE layers.


def _moe_llama(**kw) -> GPTConfig:
    base = dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False, norm_eps=1e-5)
    return GPTConfig(**{**base, **kw})


@register("gpt-moe-micro")
def gpt_moe_micro() -> GPTConfig:
    """Tiny MoE model for tests: 2 layers, 32 dims, 4 experts top-2 plus a shared expert."""
    return _moe_llama(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32, mlp_ratio=2.0,
                      moe=MoEConfig(num_experts=4, top_k=2, shared_experts=1))  # fmt: skip


@register("gpt-moe-char")
def gpt_moe_char() -> GPTConfig:
    """gpt-char with MoE FFNs of the same active width: 8 experts of 256, top-2 (2 x 256 = gpt-char's 512)."""
    return dataclasses.replace(gpt_char(), moe=MoEConfig(num_experts=8, top_k=2, expert_hidden=256))


@register("gpt-moe-bpe")
def gpt_moe_bpe() -> GPTConfig:
    """A small BPE-vocabulary MoE model for CPU benchmarks: 4 layers, 256 dims, context 256,
    8 SwiGLU experts of 512, top-2, and one shared expert of 512."""
    return _moe_llama(vocab_size=8192, block_size=256, n_layer=4, n_head=4, n_embd=256, mlp_ratio=2.0,
                      moe=MoEConfig(num_experts=8, top_k=2, shared_experts=1))  # fmt: skip


@register("mixtral-8x7b")
def mixtral_8x7b() -> GPTConfig:
    """Mixtral 8x7B (Jiang et al. 2024, arXiv:2401.04088; Hugging Face MixtralConfig defaults and
    mistralai/Mixtral-8x7B-v0.1 config.json): 32 layers, 4096 dims, 32 query / 8 key-value heads,
    8 SwiGLU experts of 14336 (mlp_ratio 3.5), top-2, vocab 32000, RoPE theta 1e6, context 32768.
    Published: 46.7B parameters in total, 12.9B active per token (tested: 46,702,792,704 / 12,879,925,248)."""
    return _moe_llama(vocab_size=32000, block_size=32768, n_layer=32, n_head=32, n_kv_head=8, n_embd=4096,
                      mlp_ratio=3.5, rope_theta=1e6, moe=MoEConfig(num_experts=8, top_k=2))  # fmt: skip


@register("deepseek-moe-16b")
def deepseek_moe_16b() -> GPTConfig:
    """DeepSeekMoE 16B (Dai et al. 2024, arXiv:2401.06066, deepseek-ai/deepseek-moe-16b-base config.json):
    28 layers, 2048 dims, 16 heads, a dense first layer of 10944 (mlp_ratio 5.34375), then 64
    fine-grained routed experts of 1408, top-6 with unnormalised softmax gates, plus 2 shared
    experts; vocab 102400, context 4096, RMSNorm eps 1e-6. Published: 16.4B parameters in total,
    2.8B active per token."""
    return _moe_llama(vocab_size=102400, block_size=4096, n_layer=28, n_head=16, n_embd=2048, mlp_ratio=5.34375,
                      norm_eps=1e-6, moe=MoEConfig(num_experts=64, top_k=6, shared_experts=2, expert_hidden=1408,
                                                   first_dense=1, normalize=False))  # fmt: skip
