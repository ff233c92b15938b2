"""Seq2Seq: the encoder-decoder Transformer, and T5, BART, PEGASUS and Marian as config data.

Vaswani et al. 2017 (arXiv:1706.03762); T5: Raffel et al. 2020 (arXiv:1910.10683); BART: Lewis
et al. 2020 (arXiv:1910.13461); PEGASUS: Zhang et al. 2020 (arXiv:1912.08777); Marian:
Junczys-Dowmunt et al. 2018 (arXiv:1804.00344).

Axes: B batch, S source (encoder) time, T target (decoder) time, C model dim (n_embd),
H heads, D head dim, V vocab.

    m_0 = s E[src] + P_enc(0..S-1)                     (s = sqrt(C) with scale_embedding, else 1)
    m_l = Block(m_{l-1})  bidirectional self-attention + MLP     -> memory m (B, S, C)
    h_0 = s E[tgt] + P_dec(0..T-1)
    h_l = Block(h_{l-1})  causal self-attention + cross-attention over m + MLP
    logits = Norm(h_L) W^T (+ b)                        (W = E when tied; b: BART's final_logits_bias)

A block is pre-norm, x + f(Norm(x)) (T5, PEGASUS), or post-norm, Norm(x + f(x)) (the
original Transformer, BART, Marian). What differs between the families is config data:

=================  ==========================  ==============  ============  ============
field              transformer (Marian)        T5              BART          PEGASUS
=================  ==========================  ==============  ============  ============
pos                sinusoidal                  t5_relative     learned (+2)  sinusoidal
norm               layernorm, post             rmsnorm, pre    layernorm,    layernorm,
                                                               post          pre
mlp                relu (Marian: silu)         relu / gated-   gelu          relu
                                               gelu (v1.1)
scale_embedding    yes                         no              no            yes
embed_norm         no                          no              yes           no
final_norm         no                          yes             no            yes
scale_attention    yes                         no              yes           yes
=================  ==========================  ==============  ============  ============

``pos="t5_relative"`` adds no position embedding: each stack's first layer owns a
:class:`~genlab.layers.positional.RelativePositionBias` (bidirectional buckets in the
encoder, causal in the decoder) and all its layers add the same bias to their scores, as T5
does. With it the bias, the padding mask and the causal mask are folded into one additive
tensor per stack, once per forward, so every layer calls SDPA with one float mask.

Teacher forcing (:meth:`Seq2Seq.forward`) with a padded source skips the padding
(``pack_padding``, on by default): the encoder's embeddings, norms, projections and MLPs
run on the N real tokens only, as rows (N, C) (:class:`Rows`), and only attention sees
the padded (B, H, S, D) layout, where the mask hides the padding anyway. The logits are the
ones the padded reference computes (tested equal, forward and backward); a batch padded
by a quarter in half its rows saves an eighth of the encoder's work. With shared
embeddings, the source and target tokens are looked up in one call; when the table is also the
head, that lookup's gradient is sparse (the rows read), which autograd adds to the head's dense
gradient of the same tensor: the table's ``.grad`` is dense as before, and the backward makes one
(V, C) copy instead of a (V, C) buffer of zeros per lookup and their sums.

Decoding runs :meth:`Seq2Seq.encode` once, then :meth:`Seq2Seq.decode` one token at a time
over a KV cache whose ``cross`` entries keep each layer's keys/values of the memory,
projected at the first step (see ``genlab.generation.decode``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.errors import ConfigError
from genlab.core.registry import register
from genlab.layers.attention import ATTENTION, MultiHeadAttention, padding_mask
from genlab.layers.kv_cache import KVCache
from genlab.layers.linear import Linear, prepare_decode
from genlab.layers.mlp import MLP_KINDS, make_mlp
from genlab.layers.norm import NORM_KINDS, make_norm
from genlab.layers.positional import RelativePositionBias, sinusoidal_halves_table, sinusoidal_table
from genlab.models.outputs import ModelOutput

POSITIONS = ["t5_relative", "learned", "sinusoidal"]
#: Sinusoid channel layouts: Vaswani's sin/cos interleave, or Marian's and PEGASUS's sines-then-cosines.
SINUSOIDS = {"interleaved": sinusoidal_table, "halves": sinusoidal_halves_table}
IGNORE_INDEX = -100  # label positions that carry no loss (padding)


@dataclass
class Seq2SeqConfig:
    vocab_size: int = 32128
    block_size: int = 512  # longest encoder input, and longest decoder sequence
    n_layer: int = 6  # encoder layers
    n_decoder_layer: int = 0  # 0 means n_layer
    n_head: int = 8
    head_dim: int = 0  # 0 means n_embd / n_head (T5 sets d_kv apart)
    n_embd: int = 512
    d_ff: int = 2048
    dropout: float = 0.1
    bias: bool = True  # biases in the attention and MLP projections
    norm_bias: bool = True  # LayerNorm bias (RMSNorm has none)
    pos: str = "learned"
    pos_offset: int = 0  # learned: rows skipped at the start of the table (BART: 2)
    sinusoid: str = "interleaved"
    rel_buckets: int = 32  # t5_relative
    rel_max_distance: int = 128
    mlp: str = "relu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    prenorm: bool = True
    embed_norm: bool = False  # a norm after the embeddings (BART's layernorm_embedding)
    final_norm: bool = True  # a norm after each stack's last layer (pre-norm stacks need one)
    scale_embedding: bool = False  # token embeddings times sqrt(n_embd)
    scale_attention: bool = True  # scores / sqrt(D); T5 leaves them unscaled
    share_embeddings: bool = True  # one token table for encoder and decoder
    tie_embeddings: bool = True  # output head = the decoder's token table
    scale_tied_head: bool = False  # T5 v1.0: decoder output times n_embd^-0.5 before the tied head
    final_logits_bias: bool = False  # a fixed (not trained) bias on the logits, as BART keeps one
    attention: str = "sdpa"
    pack_padding: bool = True  # teacher forcing runs the encoder on the real tokens only (Rows)
    pad_id: int = 0
    eos_id: int = 1
    decoder_start_id: int = 0
    init_std: float = 0.02
    emb_init_std: float = 0.0  # std of the token tables at initialisation; 0: the rule of reset_parameters

    def __post_init__(self):
        checks = {
            "pos": POSITIONS,
            "sinusoid": sorted(SINUSOIDS),
            "mlp": MLP_KINDS,
            "norm": NORM_KINDS,
            "attention": sorted(ATTENTION),
        }
        for field, valid in checks.items():
            if getattr(self, field) not in valid:
                raise ConfigError(f"{field}='{getattr(self, field)}' is not one of {valid}")
        if not self.head_dim and self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: set head_dim")
        for field in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "d_ff"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field}={getattr(self, field)} must be >= 1")

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layer or self.n_layer

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


@dataclass
class Rows:
    """The real tokens of a padded (B, S) batch: ``index`` (N,) of their places in the B S
    flattened positions. ``pack`` keeps those rows, ``unpack`` puts them back (zeros at padding)."""

    index: torch.Tensor  # (N,)
    batch: int
    time: int

    @classmethod
    def of(cls, attention_mask: torch.Tensor) -> Rows | None:
        """Rows of the 1s of a (B, S) 1/0 mask; None when nothing is padding (nothing to skip)."""
        B, S = attention_mask.shape
        index = attention_mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        return None if index.numel() == B * S else cls(index, B, S)

    @property
    def positions(self) -> torch.Tensor:
        return self.index % self.time  # (N,): each token's place in its row

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, ...) -> (N, ...)."""
        return x.reshape(self.batch * self.time, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (B, S, F), zeros at the padding."""
        full = x.new_zeros(self.batch * self.time, x.size(-1)).index_copy(0, self.index, x)  # (B S, F)
        return full.view(self.batch, self.time, -1)


def packed_self_attention(
    attn: MultiHeadAttention, h: torch.Tensor, rows: Rows, mask: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """``attn`` (bidirectional self-attention) on the real tokens h (N, C) -> (N, C): the fused QKV and
    output projections on N rows, the attention itself on the padded (B, H, S, D) layout, with the
    same strides as :class:`MultiHeadAttention` gives its backend."""
    B, S, H, D = rows.batch, rows.time, attn.n_head, attn.head_dim
    qkv = rows.unpack(attn.qkv(h)).view(B, S, 3, H, D)  # (B, S, 3, H, D): queries, keys, values
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, S, D) each
    p = attn.dropout if attn.training else 0.0
    y = attn.attend(q, k, v, mask=mask, is_causal=False, dropout_p=p, bias=bias, **attn.scale)  # (B, H, S, D)
    y = rows.pack(y.transpose(1, 2).reshape(B, S, H * D))  # (N, H D)
    return attn.resid_dropout(attn.proj(y))


class Block(nn.Module):
    """Self-attention (bidirectional in the encoder, causal in the decoder), cross-attention
    over the memory (decoder only), then the MLP; each a pre- or post-norm residual."""

    def __init__(self, cfg: Seq2SeqConfig, decoder: bool):
        super().__init__()
        self.prenorm = cfg.prenorm

        def attention(cross: bool) -> MultiHeadAttention:
            return MultiHeadAttention(
                cfg.n_embd,
                cfg.n_head,
                bias=cfg.bias,
                dropout=cfg.dropout,
                backend=cfg.attention,
                # T5's decoder folds causality into its position bias; the others mask it here.
                causal=None if cross else (decoder and cfg.pos != "t5_relative"),
                cross=cross,
                head_dim=cfg.dim_head,
                scale=None if cfg.scale_attention else 1.0,
            )

        def norm() -> nn.Module:
            return make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias)

        self.ln1, self.attn = norm(), attention(cross=False)
        self.ln_cross, self.cross = (norm(), attention(cross=True)) if decoder else (None, None)
        self.ln2 = norm()
        self.mlp = make_mlp(cfg.mlp, cfg.n_embd, cfg.d_ff, cfg.bias, cfg.dropout)

    def residual(self, x: torch.Tensor, norm: nn.Module, f) -> torch.Tensor:
        return x + f(norm(x)) if self.prenorm else norm(x + f(x))

    def forward(self, x, mask=None, bias=None, cache=None, layer=0, memory=None, memory_mask=None, rows=None):
        """x (B, T, C); or, with ``rows`` (encoder blocks), the real tokens only, (N, C)."""
        if rows is None:
            attend = lambda h: self.attn(h, mask=mask, bias=bias, cache=cache, layer=layer)
        else:
            attend = lambda h: packed_self_attention(self.attn, h, rows, mask, bias)
        x = self.residual(x, self.ln1, attend)
        if self.cross is not None:
            x = self.residual(
                x, self.ln_cross, lambda h: self.cross(h, mask=memory_mask, cache=cache, layer=layer, context=memory)
            )
        return self.residual(x, self.ln2, self.mlp)


class Seq2Seq(nn.Module):
    is_encoder_decoder = True  # the generation engine encodes once, then decodes

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.config = cfg
        C = cfg.n_embd
        self.enc_emb = nn.Embedding(cfg.vocab_size, C)
        self.dec_emb = self.enc_emb if cfg.share_embeddings else nn.Embedding(cfg.vocab_size, C)
        self.emb_scale = math.sqrt(C) if cfg.scale_embedding else 1.0
        self.enc_pos = self.dec_pos = self.enc_rel = self.dec_rel = None
        if cfg.pos == "learned":
            self.enc_pos = nn.Embedding(cfg.block_size + cfg.pos_offset, C)
            self.dec_pos = nn.Embedding(cfg.block_size + cfg.pos_offset, C)
        elif cfg.pos == "sinusoidal":
            self.register_buffer("pos_table", SINUSOIDS[cfg.sinusoid](cfg.block_size, C), persistent=False)
        else:  # t5_relative: the first layer of each stack owns the table
            self.enc_rel = RelativePositionBias(cfg.n_head, True, cfg.rel_buckets, cfg.rel_max_distance)
            self.dec_rel = RelativePositionBias(cfg.n_head, False, cfg.rel_buckets, cfg.rel_max_distance)
        norm = lambda: make_norm(cfg.norm, C, cfg.norm_eps, cfg.norm_bias)
        self.enc_emb_norm = norm() if cfg.embed_norm else None
        self.dec_emb_norm = norm() if cfg.embed_norm else None
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(Block(cfg, decoder=False) for _ in range(cfg.n_layer))
        self.decoder = nn.ModuleList(Block(cfg, decoder=True) for _ in range(cfg.decoder_layers))
        self.enc_norm = norm() if cfg.final_norm else None
        self.dec_norm = norm() if cfg.final_norm else None
        self.head = Linear(C, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.dec_emb.weight
        if cfg.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(cfg.vocab_size))
        else:
            self.final_logits_bias = None
        self.reset_parameters()

    def shard_units(self) -> list[nn.Module]:
        """What FSDP shards one group at a time (training/parallel.py): each encoder and decoder block
        (the shared embedding and the head stay in the root group)."""
        return [*self.encoder, *self.decoder]

    def reset_parameters(self) -> None:
        """N(0, init_std) for weights, zeros for biases, ones for norm gains. Token tables start at
        N(0, emb_init_std) when it is set (T5: 1.0, so that with the C^-1/2 of its tied head the
        first logits have unit scale, as transformers' T5 initialisation draws it), else at init_std
        like every other weight, also where the embeddings are scaled by sqrt(C) (Marian, PEGASUS),
        as transformers initialises them. (Tables at N(0, C^-1/2), fairseq's rule, made s E unit-scale
        and, through the tied head, gave each position's own input token a logit about sqrt(C) above
        the rest: on a copy task those models stalled at the uniform loss.) Unscaled attention (T5)
        starts its query weights at std / sqrt(D), the factor T5 folds into its initialisation
        instead of dividing the scores."""
        cfg = self.config
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.zeros_(p) if name.endswith("bias") else nn.init.ones_(p)
            elif name.endswith("_emb.weight") and cfg.emb_init_std:
                nn.init.normal_(p, 0.0, cfg.emb_init_std)
            else:
                nn.init.normal_(p, 0.0, cfg.init_std)
        if not cfg.scale_attention:
            for block in [*self.encoder, *self.decoder]:
                for attn in (block.attn, block.cross):
                    if attn is None:
                        continue
                    w = attn.q.weight if attn.cross else attn.qkv.weight[: cfg.n_head * cfg.dim_head]
                    with torch.no_grad():
                        w.mul_(cfg.dim_head**-0.5)

    # --- embeddings ---------------------------------------------------------------------

    def _embed(self, x: torch.Tensor, positions: torch.Tensor, pos, emb_norm) -> torch.Tensor:
        """Token vectors x (B, T, C) (or rows (N, C)) at ``positions`` (T,) (or (N,)) -> the stack's input."""
        if self.emb_scale != 1.0:
            x = x * self.emb_scale
        if self.config.pos == "learned":
            x = x + pos(positions + self.config.pos_offset)
        elif self.config.pos == "sinusoidal":
            x = x + self.pos_table[positions]
        if emb_norm is not None:
            x = emb_norm(x)
        return self.drop(x)

    def _check_length(self, n: int, what: str) -> None:
        if n > self.config.block_size:
            raise ConfigError(
                f"{what} of {n} tokens exceeds the model's context of {self.config.block_size}: shorten or truncate it"
            )

    # --- encoder ------------------------------------------------------------------------

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, S), attention_mask (B, S) 1/0 (right padding) -> memory (B, S, C)."""
        self._check_source(input_ids)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)  # (S,)
        return self._encoder(self.enc_emb(input_ids), positions, attention_mask)

    def _check_source(self, input_ids: torch.Tensor) -> None:
        if input_ids.size(1) == 0:
            raise ConfigError("the encoder input is empty: give at least one token")
        self._check_length(input_ids.size(1), "an encoder input")

    def _encoder(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        attention_mask: torch.Tensor | None,
        rows: Rows | None = None,
    ) -> torch.Tensor:
        """Token vectors (B, S, C) at positions (S,) -> memory (B, S, C). With ``rows`` the
        vectors and positions are the real tokens' only, (N, C) and (N,); the layers run on those
        rows and the memory comes back padded with zeros (which the decoder's mask hides)."""
        S = rows.time if rows is not None else tokens.size(1)
        x = self._embed(tokens, positions, self.enc_pos, self.enc_emb_norm)
        mask = padding_mask(attention_mask) if attention_mask is not None else None  # (B, 1, 1, S)
        bias = None
        if self.enc_rel is not None:
            at = torch.arange(S, device=tokens.device)  # (S,)
            bias = self.enc_rel(at, at).to(x.dtype)  # (1, H, S, S)
            if mask is not None:
                bias = bias.masked_fill(~mask, float("-inf"))  # (B, H, S, S)
            mask = None
        for block in self.encoder:
            x = block(x, mask=mask, bias=bias, rows=rows)
        x = self.enc_norm(x) if self.enc_norm is not None else x
        return x if rows is None else rows.unpack(x)  # (B, S, C)

    # --- decoder ------------------------------------------------------------------------

    def decode(
        self,
        ids: torch.Tensor,
        memory: torch.Tensor | None,
        memory_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        last_only: bool = False,
        hidden_states: bool = False,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor | ModelOutput:
        """ids (B, T) decoder tokens over ``memory`` (B, S, C) with its 1/0 ``memory_mask`` (B, S)
        -> logits (B, T, V) ((B, 1, V) with ``last_only``).

        With a ``cache`` the T tokens follow those cached; the memory's keys/values are
        projected on the first call and read from ``cache.cross`` afterwards (``memory`` may
        then be None). ``attention_mask`` (B, cached + T) hides decoder padding. ``tokens``
        (B, T, C): the ids' rows of the token table, when the caller has looked them up already.
        """
        B, T = ids.shape
        start = cache.length if cache is not None else 0
        self._check_length(start + T, "a decoder sequence")
        if positions is None:
            positions = torch.arange(start, start + T, device=ids.device)  # (T,)
        tokens = self.dec_emb(ids) if tokens is None else tokens  # (B, T, C)
        x = self._embed(tokens, positions, self.dec_pos, self.dec_emb_norm)
        mask = padding_mask(attention_mask, T) if attention_mask is not None else None  # (B, 1, T, S)
        bias = None
        if self.dec_rel is not None:
            q = positions if positions.dim() == 1 else positions[0]
            keys = torch.arange(start + T, device=ids.device)  # (S,)
            bias = self.dec_rel(q, keys).to(x.dtype)  # (1, H, T, S)
            causal = keys[None, :] <= q[:, None]  # (T, S)
            mask = causal if mask is None else mask & causal
            bias = bias.masked_fill(~mask, float("-inf"))  # (1|B, H, T, S)
            mask = None
        cross_mask = padding_mask(memory_mask) if memory_mask is not None else None  # (B, 1, 1, S)
        states = [x] if hidden_states else None
        for i, block in enumerate(self.decoder):
            x = block(x, mask=mask, bias=bias, cache=cache, layer=i, memory=memory, memory_mask=cross_mask)
            if states is not None:
                states.append(x)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1:]
        if self.dec_norm is not None:
            x = self.dec_norm(x)
        if self.config.scale_tied_head:
            x = x * self.config.n_embd**-0.5
        logits = self.head(x)  # (B, T, V)
        if self.final_logits_bias is not None:
            logits = logits + self.final_logits_bias
        return logits if states is None else ModelOutput(logits, hidden_states=tuple(states))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        hidden_states: bool = False,
    ) -> ModelOutput:
        """Teacher forcing: source (B, S) and decoder inputs (B, T) (the targets shifted right,
        see :meth:`shift_right`) -> ModelOutput with logits (B, T, V)."""
        if decoder_input_ids is None:
            raise ConfigError("an encoder-decoder model needs decoder_input_ids: the targets shifted right")
        self._check_source(input_ids)
        B, S = input_ids.shape
        rows = Rows.of(attention_mask) if self.config.pack_padding and attention_mask is not None else None
        src = input_ids if rows is None else rows.pack(input_ids)  # (B, S) or (N,)
        positions = torch.arange(S, device=input_ids.device) if rows is None else rows.positions  # (S,) or (N,)
        if self.enc_emb is self.dec_emb:  # one lookup for both stacks
            n, table = src.numel(), self.enc_emb.weight
            ids = torch.cat([src.reshape(-1), decoder_input_ids.reshape(-1)])  # (n + B T,)
            both = F.embedding(ids, table, sparse=self._sparse_lookup())  # (n + B T, C)
            src_tokens = both[:n].view(*src.shape, -1)  # (B, S, C) or (N, C)
            tgt_tokens = both[n:].view(*decoder_input_ids.shape, -1)  # (B, T, C)
        else:
            src_tokens, tgt_tokens = self.enc_emb(src), None
        memory = self._encoder(src_tokens, positions, attention_mask, rows)  # (B, S, C)
        out = self.decode(
            decoder_input_ids, memory, attention_mask, cache, attention_mask=decoder_attention_mask,
            hidden_states=hidden_states, tokens=tgt_tokens,
        )  # fmt: skip
        return out if isinstance(out, ModelOutput) else ModelOutput(out)

    def _sparse_lookup(self) -> bool:
        """Whether teacher forcing's lookup may give the token table a sparse gradient (the rows it
        read). Only for a table tied to the head: the head's dense gradient of the same tensor arrives
        in the same backward and autograd adds the rows to it (dense + sparse: one copy of V C floats),
        so the table's ``.grad`` is dense as always, without the zeros-then-sum of V C floats that a
        dense lookup gradient costs. Not for sharded parameters (FSDP's are DTensors)."""
        table = self.enc_emb.weight
        return (
            self.head.weight is table
            and table.requires_grad
            and torch.is_grad_enabled()
            and type(table.data) is torch.Tensor
        )

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs from targets (B, T): the start token, then labels[:, :-1], with
        ignored positions (-100) read as padding."""
        ids = torch.full_like(labels, self.config.decoder_start_id)
        ids[:, 1:] = labels[:, :-1]
        return ids.masked_fill(ids == IGNORE_INDEX, self.config.pad_id)

    def make_cache(self, batch: int, max_len: int, dtype=None, device=None) -> KVCache:
        """A decoder KV cache for ``batch`` rows of up to ``max_len`` (<= block_size) tokens;
        its ``cross`` fills with the memory's keys/values on the first step.

        Also lays out the weights for decoding (see :mod:`genlab.layers.linear`)."""
        cfg, ref = self.config, self.enc_emb.weight
        prepare_decode(self)
        return KVCache(
            cfg.decoder_layers,
            batch,
            cfg.n_head,
            cfg.dim_head,
            min(max_len, cfg.block_size),
            dtype or ref.dtype,
            device or ref.device,
        )

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --- Presets -------------------------------------------------------------------------
# CPU shapes first, then the published architectures. Each published preset's parameter
# count equals what transformers builds from the matching config (tests/models/test_seq2seq.py).


def _transformer(C: int, H: int, d_ff: int, dropout: float, vocab: int = 37000, layers: int = 6) -> Seq2SeqConfig:
    """Vaswani et al. 2017: post-norm, sinusoidal positions (interleaved), embeddings scaled by
    sqrt(C) and shared by encoder, decoder and output head, ReLU. The paper's WMT14 en-de
    models share a 37,000-token BPE vocabulary (en-fr: 32,000 word pieces); the presets use 37,000."""
    return Seq2SeqConfig(
        vocab_size=vocab, block_size=512, n_layer=layers, n_head=H, n_embd=C, d_ff=d_ff, dropout=dropout,
        pos="sinusoidal", sinusoid="interleaved", mlp="relu", norm="layernorm", prenorm=False,
        final_norm=False, scale_embedding=True, pad_id=0, eos_id=1, decoder_start_id=0,
    )  # fmt: skip


def _t5(C: int, L: int, H: int, d_ff: int, vocab: int = 32128, block: int = 512, d_kv: int = 64) -> Seq2SeqConfig:
    """T5 (v1.0): pre-norm RMSNorm without bias, no biases anywhere, unscaled attention,
    relative position buckets (32, up to distance 128), ReLU, one shared table tied to the head
    with the decoder output scaled by C^-1/2; 32,128-token SentencePiece vocabulary."""
    return Seq2SeqConfig(
        vocab_size=vocab, block_size=block, n_layer=L, n_head=H, head_dim=d_kv, n_embd=C, d_ff=d_ff,
        dropout=0.1, bias=False, norm_bias=False, pos="t5_relative", mlp="relu", norm="rmsnorm",
        norm_eps=1e-6, prenorm=True, final_norm=True, scale_attention=False, scale_tied_head=True,
        pad_id=0, eos_id=1, decoder_start_id=0, init_std=1.0 / math.sqrt(C), emb_init_std=1.0,
    )  # fmt: skip


def _bart(C: int, L: int, H: int, d_ff: int, vocab: int = 50265, block: int = 1024) -> Seq2SeqConfig:
    """BART: post-norm LayerNorm, learned positions with an offset of 2, LayerNorm on the
    embeddings, GELU, tied head plus final_logits_bias; GPT-2's 50,265-token byte-level BPE."""
    return Seq2SeqConfig(
        vocab_size=vocab, block_size=block, n_layer=L, n_head=H, n_embd=C, d_ff=d_ff, dropout=0.1,
        pos="learned", pos_offset=2, mlp="gelu", norm="layernorm", prenorm=False, embed_norm=True,
        final_norm=False, final_logits_bias=True, pad_id=1, eos_id=2, decoder_start_id=2,
    )  # fmt: skip


def _pegasus(C: int, L: int, H: int, d_ff: int, vocab: int = 96103, block: int = 1024) -> Seq2SeqConfig:
    """PEGASUS: pre-norm LayerNorm with a final norm per stack, sinusoidal positions (sines then
    cosines), embeddings scaled by sqrt(C), ReLU, tied head plus final_logits_bias; 96,103 tokens."""
    return Seq2SeqConfig(
        vocab_size=vocab, block_size=block, n_layer=L, n_head=H, n_embd=C, d_ff=d_ff, dropout=0.1,
        pos="sinusoidal", sinusoid="halves", mlp="relu", norm="layernorm", prenorm=True, final_norm=True,
        scale_embedding=True, final_logits_bias=True, pad_id=0, eos_id=1, decoder_start_id=0,
    )  # fmt: skip


@register("seq2seq-micro")
def seq2seq_micro() -> Seq2SeqConfig:
    """Tiny T5-shaped model for tests: 2 + 2 layers, 2 heads, 32 dims."""
    cfg = _t5(32, 2, 2, 64, vocab=96, block=64, d_kv=16)
    cfg.dropout = 0.0
    return cfg


register("t5-cpu")(lambda: _t5(256, 4, 4, 1024, vocab=8000, block=256))  # ~9.4M with an 8k vocabulary
register("bart-cpu")(lambda: _bart(256, 3, 4, 1024, vocab=8000, block=256))  # ~7.7M
register("transformer-cpu")(lambda: _transformer(256, 4, 1024, 0.1, vocab=8000, layers=3))  # ~7.6M

register("transformer-base")(lambda: _transformer(512, 8, 2048, 0.1))  # 63.1M (the paper: 65M)
register("transformer-big")(lambda: _transformer(1024, 16, 4096, 0.3))  # 214.1M (the paper: 213M)
register("t5-small")(lambda: _t5(512, 6, 8, 2048))  # 60,506,624
register("t5-base")(lambda: _t5(768, 12, 12, 3072))  # 222,903,552
register("t5-large")(lambda: _t5(1024, 24, 16, 4096))  # 737,668,096
register("bart-base")(lambda: _bart(768, 6, 12, 3072))  # 139.4M
register("bart-large")(lambda: _bart(1024, 12, 16, 4096))  # 406.3M
register("pegasus-large")(lambda: _pegasus(1024, 16, 16, 4096))  # 568.7M
