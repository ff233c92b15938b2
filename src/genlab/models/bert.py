"""BERT: a bidirectional Transformer encoder and its task heads.

Devlin et al. 2018, arXiv:1810.04805. Sentence embeddings: Reimers & Gurevych 2019 (Sentence-BERT,
arXiv:1908.10084).

Axes: B batch, T time, C model dim (n_embd), E embedding dim (C unless factorised), H heads,
D head dim (C / H), V vocab, L labels.

    h_0 = LN(E_tok[ids] + E_pos[offset + t] + E_type[segment]) W_in     embeddings (W_in only when E < C)
    a_l = LN(h_{l-1} + Attn(h_{l-1}, padding mask))                      post-norm encoder layers,
    h_l = LN(a_l + MLP(a_l))                                             every query sees every real key
    pooled = tanh(h_L[:, 0] W_p + b_p)                                   the [CLS] summary (pooler)

Heads, each on by name in ``BertConfig.heads``:

    mlm       logits = LN(act(h_L W_t + b_t)) E_tok^T + b        masked LM, decoder tied to E_tok
    nsp       logits = pooled W_nsp + b                          next-sentence prediction (2 classes)
    sequence  logits = dropout(pooled) W_cls + b                 sequence classification (L classes)
    token     logits = dropout(h_L) W_tok + b                    token classification (L classes)
    qa        start, end = h_L W_qa + b                          extractive QA: span start/end logits

and, without parameters, :meth:`Bert.embed`: the L2-normalised mean of h_L over the real tokens.

Variants are data: ``embedding_size`` < ``n_embd`` factorises the embeddings (ALBERT),
``share_layers`` runs one layer ``n_layer`` times (ALBERT), ``type_vocab_size=0`` drops the
segment embeddings (DistilBERT), ``position_offset`` starts positions after the padding index
(RoBERTa: 2), ``pooler=False`` drops the pooler (DistilBERT, masked-LM-only checkpoints).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.registry import register
from genlab.layers.attention import ATTENTION, MultiHeadAttention, padding_mask
from genlab.layers.linear import Linear
from genlab.layers.mlp import ACTIVATIONS, make_mlp

#: The task heads a Bert can carry; see the module docstring.
HEADS = ["mlm", "nsp", "sequence", "token", "qa"]


@dataclass
class BertConfig:
    vocab_size: int = 30522
    block_size: int = 512  # longest sequence; the position table has block_size + position_offset rows
    type_vocab_size: int = 2  # segments (sentence A / B); 0 = no segment embeddings
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768  # C, the hidden size
    n_inner: int = 0  # MLP width; 0 means 4 * n_embd
    embedding_size: int = 0  # E; 0 means n_embd (ALBERT factorises with E < C)
    share_layers: bool = False  # one layer's weights used n_layer times (ALBERT)
    dropout: float = 0.1  # embeddings, residual branches and classifier inputs
    attention_dropout: float = 0.1  # on the attention weights
    mlp: str = "gelu"  # activation of the MLP and of the masked-LM transform
    norm_eps: float = 1e-12
    pad_token_id: int | None = 0  # its embedding row starts at zero and gets no gradient from lookups
    position_offset: int = 0  # position of the first token (RoBERTa: padding_idx + 1 = 2)
    pooler: bool = True
    heads: list[str] = field(default_factory=lambda: ["mlm"])
    num_labels: int = 2  # classes of the sequence and token heads
    tie_embeddings: bool = True  # masked-LM decoder shares the token embedding
    attention: str = "sdpa"
    init_std: float = 0.02

    def __post_init__(self):
        if self.mlp not in ACTIVATIONS:
            raise ValueError(f"mlp='{self.mlp}' is not one of {sorted(ACTIVATIONS)}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention='{self.attention}' is not one of {sorted(ATTENTION)}")
        if isinstance(self.heads, str) or not all(isinstance(h, str) for h in self.heads):
            raise ValueError(f"heads must be a list of names from {HEADS}, got {self.heads!r}")
        self.heads = list(self.heads)
        unknown = [h for h in self.heads if h not in HEADS]
        if unknown:
            raise ValueError(f"unknown head '{unknown[0]}'; choose from {HEADS}")
        if len(set(self.heads)) != len(self.heads):
            raise ValueError(f"heads lists a head twice: {self.heads}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "num_labels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("type_vocab_size", "n_inner", "embedding_size", "position_offset"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id={self.pad_token_id} is outside the vocabulary of {self.vocab_size}")
        needs_pooler = [h for h in self.heads if h in ("nsp", "sequence")]
        if needs_pooler and not self.pooler:
            raise ValueError(f"the '{needs_pooler[0]}' head reads the pooled [CLS] state: set pooler=true")

    @property
    def hidden(self) -> int:
        """MLP width."""
        return self.n_inner or 4 * self.n_embd

    @property
    def emb_dim(self) -> int:
        """E, the width of the token/position/segment embeddings."""
        return self.embedding_size or self.n_embd


@dataclass
class BertOutput:
    """What :meth:`Bert.forward` returns; a head's field is None unless the head ran."""

    hidden: torch.Tensor  # (B, T, C) last encoder layer
    pooled: torch.Tensor | None = None  # (B, C) tanh(W_p h[CLS])
    mlm_logits: torch.Tensor | None = None  # (B, T, V)
    nsp_logits: torch.Tensor | None = None  # (B, 2), index 0 = "B follows A"
    logits: torch.Tensor | None = None  # (B, L) sequence classification
    token_logits: torch.Tensor | None = None  # (B, T, L)
    start_logits: torch.Tensor | None = None  # (B, T) answer-span start
    end_logits: torch.Tensor | None = None  # (B, T) answer-span end


class Block(nn.Module):
    """One post-norm encoder layer: x = LN(x + Attn(x)), then x = LN(x + MLP(x))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = MultiHeadAttention(
            cfg.n_embd,
            cfg.n_head,
            dropout=cfg.dropout,
            attn_dropout=cfg.attention_dropout,
            backend=cfg.attention,
            causal=False,
        )
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = make_mlp(cfg.mlp, cfg.n_embd, cfg.hidden, bias=True, dropout=cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.ln1(x + self.attn(x, mask=mask))
        return self.ln2(x + self.mlp(x))


class MaskedLMHead(nn.Module):
    """logits = LN(act(h W_t + b_t)) W_dec^T + b, W_dec (V, E) tied to the token embedding by default."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = Linear(cfg.n_embd, cfg.emb_dim)
        self.act = ACTIVATIONS[cfg.mlp]
        self.norm = nn.LayerNorm(cfg.emb_dim, eps=cfg.norm_eps)
        self.decoder = Linear(cfg.emb_dim, cfg.vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(h))))  # (..., V)


class Bert(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        E, C = cfg.emb_dim, cfg.n_embd
        self.tok_emb = nn.Embedding(cfg.vocab_size, E, padding_idx=cfg.pad_token_id)
        self.pos_emb = nn.Embedding(cfg.block_size + cfg.position_offset, E)
        self.type_emb = nn.Embedding(cfg.type_vocab_size, E) if cfg.type_vocab_size else None
        self.emb_norm = nn.LayerNorm(E, eps=cfg.norm_eps)
        self.emb_proj = Linear(E, C) if E != C else None  # ALBERT: E -> C
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(1 if cfg.share_layers else cfg.n_layer))
        self.pooler = Linear(C, C) if cfg.pooler else None
        heads = set(cfg.heads)
        self.mlm = MaskedLMHead(cfg) if "mlm" in heads else None
        self.nsp = Linear(C, 2) if "nsp" in heads else None
        self.classifier = Linear(C, cfg.num_labels) if "sequence" in heads else None
        self.token_classifier = Linear(C, cfg.num_labels) if "token" in heads else None
        self.qa = Linear(C, 2) if "qa" in heads else None
        self.reset_parameters()
        if self.mlm is not None and cfg.tie_embeddings:
            self.mlm.decoder.weight = self.tok_emb.weight

    def reset_parameters(self) -> None:
        """BERT initialisation: weights N(0, init_std), biases 0, LayerNorm 1 and 0, padding row 0."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, self.config.init_std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.config.pad_token_id is not None:
            with torch.no_grad():
                self.tok_emb.weight[self.config.pad_token_id].zero_()

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) 1 = token / 0 = padding, token_type_ids (B, T)
        -> last hidden states (B, T, C). Hidden states at padding positions are not meaningful."""
        cfg = self.config
        T = input_ids.size(1)
        if input_ids.size(1) > cfg.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds the position table of {cfg.block_size}")
        positions = torch.arange(cfg.position_offset, cfg.position_offset + T, device=input_ids.device)  # (T,)
        x = self.tok_emb(input_ids) + self.pos_emb(positions)  # (B, T, E)
        if self.type_emb is not None:
            x = x + (self.type_emb.weight[0] if token_type_ids is None else self.type_emb(token_type_ids))
        x = self.drop(self.emb_norm(x))
        if self.emb_proj is not None:
            x = self.emb_proj(x)  # (B, T, C)
        # A batch without padding needs no mask, which lets SDPA take its fastest kernel.
        mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            mask = padding_mask(attention_mask)  # (B, 1, 1, T): every query sees the real keys
        for i in range(cfg.n_layer):
            x = self.blocks[0 if cfg.share_layers else i](x, mask=mask)
        return x

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The pooler: tanh(W_p h[CLS] + b_p), (B, T, C) -> (B, C)."""
        if self.pooler is None:
            raise ValueError("this Bert has no pooler (pooler=false)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        heads: Sequence[str] | None = None,
    ) -> BertOutput:
        """Encode and run ``heads`` (default: all of the config's heads; ``()`` for none)."""
        heads = self.config.heads if heads is None else list(heads)
        missing = [h for h in heads if h not in self.config.heads]
        if missing:
            raise ValueError(f"head '{missing[0]}' is not part of this model (config.heads={self.config.heads})")
        h = self.encode(input_ids, attention_mask, token_type_ids)
        out = BertOutput(hidden=h, pooled=self.pool(h) if self.pooler is not None else None)
        if "mlm" in heads:
            out.mlm_logits = self.mlm(h)
        if "nsp" in heads:
            out.nsp_logits = self.nsp(out.pooled)
        if "sequence" in heads:
            out.logits = self.classifier(self.drop(out.pooled))
        if "token" in heads:
            out.token_logits = self.token_classifier(self.drop(h))
        if "qa" in heads:
            out.start_logits, out.end_logits = self.qa(h).unbind(-1)  # (B, T) each
        return out

    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sentence embeddings (B, C) as Sentence-BERT computes them:

        e = m^T h / max(sum_t m_t, 1e-9),    embedding = e / max(||e||_2, 1e-12)

        the mean of the last hidden states over the real tokens (mask m), L2-normalised.
        """
        h = self.encode(input_ids, attention_mask, token_type_ids)  # (B, T, C)
        if attention_mask is None:
            e = h.mean(dim=1)
        else:
            m = attention_mask.to(h.dtype)  # (B, T)
            e = torch.bmm(m[:, None, :], h).squeeze(1) / m.sum(1, keepdim=True).clamp(min=1e-9)  # (B, C)
        return F.normalize(e, p=2, dim=-1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --- Presets -------------------------------------------------------------------------
# A tiny shape for tests, then the published architectures. Parameter counts in the comments
# are the encoder with its pooler (the numbers papers quote) / with the preset's heads.


@register("bert-micro")
def bert_micro() -> BertConfig:
    """Tiny model for tests: 2 layers, 2 heads, 32 dims, a 128-token vocabulary."""
    return BertConfig(vocab_size=128, block_size=64, n_layer=2, n_head=2, n_embd=32, heads=["mlm", "nsp"])


@register("bert-base")
def bert_base() -> BertConfig:
    """BERT-base (Devlin et al. 2018): 12 x 768, 12 heads; 109,482,240 / 110,106,428 with MLM + NSP."""
    return BertConfig(heads=["mlm", "nsp"])


@register("bert-large")
def bert_large() -> BertConfig:
    """BERT-large: 24 x 1024, 16 heads; 335,141,888 (the paper's "340M") / 336,226,108 with MLM + NSP."""
    return BertConfig(n_layer=24, n_head=16, n_embd=1024, heads=["mlm", "nsp"])


@register("roberta-base")
def roberta_base() -> BertConfig:
    """RoBERTa-base (Liu et al. 2019, arXiv:1907.11692): BERT-base on a 50,265-token byte-level BPE,
    one segment, positions from padding_idx + 1 = 2, no NSP; 124,645,632 / 124,697,433 as a masked LM."""
    return BertConfig(
        vocab_size=50265, type_vocab_size=1, pad_token_id=1, position_offset=2, norm_eps=1e-5, pooler=False
    )


@register("distilbert-base")
def distilbert_base() -> BertConfig:
    """DistilBERT (Sanh et al. 2019, arXiv:1910.01108): BERT-base with 6 layers, no segment embeddings
    and no pooler; 66,362,880 / 66,985,530 as a masked LM."""
    return BertConfig(n_layer=6, type_vocab_size=0, pooler=False)


@register("minilm-l6")
def minilm_l6() -> BertConfig:
    """all-MiniLM-L6-v2 (Wang et al. 2020, arXiv:2002.10957; sentence-transformers): 6 x 384, 12 heads
    of 32, MLP 1536, BERT's uncased vocabulary; a sentence encoder, no heads; 22,713,216."""
    return BertConfig(n_layer=6, n_head=12, n_embd=384, heads=[])
