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
    sop       logits = dropout(pooled) W_sop + b                 ALBERT sentence-order prediction (2 classes)
    rtd       logit_t = act(h_t W_d + b_d) w_o + b_o             ELECTRA replaced-token detection, (B, T)
    sbo       y_i = MLP([h_{s-1}; h_{e+1}; P_{i-s}]),            SpanBERT span boundary objective: the
              logits_i = y_i E_tok^T + b                         masked-LM decoder reads y_i (see below)

The ``sequence`` head reads either the pooler (``classifier="pooler"``, BERT and ALBERT) or the
[CLS] / <s> state through its own dense layer (RoBERTa, ELECTRA, DistilBERT)::

    logits = W_o dropout(act(W_d dropout(h_L[:, 0]) + b_d)) + b_o      act = CLASSIFIERS[classifier]

and, without parameters, :meth:`Bert.embed`: the L2-normalised mean of h_L over the real tokens.

Variants are data: ``embedding_size`` != ``n_embd`` factorises the embeddings (ALBERT; ELECTRA's
generator), ``share_layers`` runs one layer ``n_layer`` times (ALBERT), ``type_vocab_size=0`` drops
the segment embeddings (DistilBERT), ``position_offset`` starts positions after the padding index
and ``positions_from_mask`` counts them over the real tokens only (RoBERTa: 2 and true),
``pooler=False`` drops the pooler (ELECTRA, DistilBERT, masked-LM-only checkpoints),
``mlm_act`` sets the masked-LM transform's activation where a family fixes it (RoBERTa and ELECTRA
use exact GELU whatever ``mlp`` is), ``attention`` = longformer / linformer / lsh swaps in an
efficient attention (``layers/efficient``; Longformer's global tokens come in through
``global_attention_mask``, :mod:`genlab.models.convert.longformer` loads LongformerModel
weights). ELECTRA's generator and discriminator are two Bert models
that share their embedding modules: :func:`electra_pair`.

``moe`` (a :class:`~genlab.layers.moe.MoEConfig`, the options GPT has; off by default) makes
every ``moe.every``-th layer's FFN a mixture of experts of the layer's own kind (activation,
biases): ``model.moe.num_experts=4 model.moe.top_k=2``. The layers' balancing losses, summed
over every layer application (ALBERT's shared layer counts n_layer times), come back as
``BertOutput.aux_loss``, which the pretraining objective passes on to the training engine as
the metric ``aux_loss``, as GPT's ``ModelOutput.aux_loss`` is. A dense BERT's parameters and
state-dict keys are unchanged; an MoE layer holds ``mlp.router.weight`` (E, C),
``mlp.experts.fc.weight`` (E, C, H), ``mlp.experts.fc.bias`` (E, H), ``mlp.experts.proj.*``.

Span boundary objective (Joshi et al. 2019, SpanBERT, arXiv:1907.10529). For a masked span
x_s .. x_e and each position i in it, with P a learned table of relative positions i - s::

    z_1 = LN(act(W_1 [h_{s-1}; h_{e+1}; P_{i-s}] + b_1))      (3C -> C)
    y_i = LN(act(W_2 z_1 + b_2))                                (C -> E)

and y_i goes through the (tied) masked-LM decoder. The boundaries are (s - 1, e + 1, i - s) per
masked position and -1 elsewhere, the format of ``genlab.objectives.masked_lm.span_mask``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.errors import CheckpointError, ConfigError
from genlab.core.registry import register
from genlab.layers.attention import ATTENTION, MultiHeadAttention, padding_mask
from genlab.layers.efficient import (
    EFFICIENT_ATTENTION,
    check_efficient,
    efficient_attention,
    options,
    tie_linformer_projections,
)
from genlab.layers.linear import Linear
from genlab.layers.mlp import ACTIVATIONS, make_mlp
from genlab.layers.moe import ExpertLinear, MoE, MoEConfig, Router

#: The task heads a Bert can carry; see the module docstring.
HEADS = ["mlm", "nsp", "sequence", "token", "qa", "sop", "rtd", "sbo"]

#: ``BertConfig.classifier`` -> the activation of the sequence head's dense layer on h[CLS]
#: (None: the head reads the pooler, which has its own tanh).
CLASSIFIERS = {
    "pooler": None,  # BERT, ALBERT: dropout(pooled) W + b
    "roberta": torch.tanh,  # RobertaClassificationHead: dense, tanh, out_proj on <s>
    "electra": F.gelu,  # ElectraClassificationHead: dense, exact GELU, out_proj on [CLS]
    "distilbert": F.relu,  # DistilBertForSequenceClassification: pre_classifier, ReLU, classifier
}


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
    # Efficient attention (layers/efficient), read when attention is longformer, linformer or lsh:
    attention_window: int = 256  # longformer: w/2 keys on each side (Longformer's attention_window)
    attention_dilation: int = 1  # longformer: every d-th key inside the window
    global_projections: bool = False  # longformer: separate Q/K/V for global tokens (LongformerModel's *_global)
    linformer_k: int = 256  # linformer: keys/values projected from block_size positions to k
    linformer_share: str = "none"  # none (E, F per layer) | kv (E = F) | layer (one E for every layer)
    lsh_buckets: int = 32
    lsh_rounds: int = 4
    lsh_chunk: int = 64
    init_std: float = 0.02
    classifier: str = "pooler"  # the sequence head: a key of CLASSIFIERS
    mlm_act: str = ""  # activation of the masked-LM transform; "" means mlp's
    positions_from_mask: bool = False  # position = offset + real tokens before t (RoBERTa); no mask: offset + t
    sbo_max_span: int = 10  # rows of the span boundary head's relative-position table (longest span)
    moe: MoEConfig = field(default_factory=MoEConfig)  # mixture of experts; num_experts=0: none

    def __post_init__(self):
        if isinstance(self.moe, dict):
            self.moe = MoEConfig(**self.moe)
        if self.mlp not in ACTIVATIONS:
            raise ValueError(f"mlp='{self.mlp}' is not one of {sorted(ACTIVATIONS)}")
        if self.mlm_act and self.mlm_act not in ACTIVATIONS:
            raise ValueError(f"mlm_act='{self.mlm_act}' is not one of {sorted(ACTIVATIONS)} (or '' for mlp's)")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier='{self.classifier}' is not one of {list(CLASSIFIERS)}")
        if self.attention not in ATTENTION and self.attention not in EFFICIENT_ATTENTION:
            valid = sorted(ATTENTION) + sorted(EFFICIENT_ATTENTION)
            raise ValueError(f"attention='{self.attention}' is not one of {valid}")
        check_efficient(self.attention, options(self), causal=False, family="BERT encoder")
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
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "num_labels", "sbo_max_span"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("type_vocab_size", "n_inner", "embedding_size", "position_offset"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id={self.pad_token_id} is outside the vocabulary of {self.vocab_size}")
        pooled = ("nsp", "sop", "sequence") if self.classifier == "pooler" else ("nsp", "sop")
        needs_pooler = [h for h in self.heads if h in pooled]
        if needs_pooler and not self.pooler:
            hint = " (or a classifier without it, e.g. classifier=roberta)" if needs_pooler[0] == "sequence" else ""
            raise ValueError(f"the '{needs_pooler[0]}' head reads the pooled [CLS] state: set pooler=true{hint}")
        if "sbo" in self.heads and "mlm" not in self.heads:
            raise ValueError("the 'sbo' head predicts through the masked-LM decoder: add 'mlm' to heads")

    @property
    def hidden(self) -> int:
        """MLP width."""
        return self.n_inner or 4 * self.n_embd

    @property
    def emb_dim(self) -> int:
        """E, the width of the token/position/segment embeddings."""
        return self.embedding_size or self.n_embd

    @property
    def head_act(self) -> str:
        """The masked-LM transform's activation."""
        return self.mlm_act or self.mlp


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
    sop_logits: torch.Tensor | None = None  # (B, 2), index 0 = "in order" (ALBERT)
    rtd_logits: torch.Tensor | None = None  # (B, T), > 0 = "replaced" (ELECTRA discriminator)
    sbo_logits: torch.Tensor | None = None  # (N, V) at the N masked positions, given span_boundaries
    aux_loss: torch.Tensor | None = None  # MoE balancing losses, summed and weighted; None for a dense model


class Block(nn.Module):
    """One post-norm encoder layer: x = LN(x + Attn(x)), then x = LN(x + MLP(x)); the MLP is a
    mixture of experts in the layers ``cfg.moe`` picks."""

    def __init__(self, cfg: BertConfig, layer: int = 0):
        super().__init__()
        if cfg.attention in EFFICIENT_ATTENTION:
            self.attn = efficient_attention(
                cfg.attention, cfg.n_embd, cfg.n_head, causal=False, seq_len=cfg.block_size,
                dropout=cfg.dropout, attn_dropout=cfg.attention_dropout, **options(cfg),
            )  # fmt: skip
        else:
            self.attn = MultiHeadAttention(
                cfg.n_embd,
                cfg.n_head,
                dropout=cfg.dropout,
                attn_dropout=cfg.attention_dropout,
                backend=cfg.attention,
                causal=False,
            )
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        if cfg.moe.is_moe_layer(layer):
            self.mlp = MoE(cfg.n_embd, cfg.hidden, cfg.moe, cfg.mlp, bias=True, dropout=cfg.dropout)
        else:
            self.mlp = make_mlp(cfg.mlp, cfg.n_embd, cfg.hidden, bias=True, dropout=cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, global_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        a = self.attn(x, mask=mask) if global_mask is None else self.attn(x, mask=mask, global_mask=global_mask)
        x = self.ln1(x + a)
        return self.ln2(x + self.mlp(x))

    def forward_packed(self, x: torch.Tensor, rows: torch.Tensor, B: int, T: int, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on the N real tokens only: x (N, C) packed, ``rows`` (N,) their flat
        positions b T + t in the (B, T) batch, ``mask`` the (B, 1, 1, T) key padding mask. The QKV,
        output and MLP projections and the LayerNorms see the N real tokens; only the attention
        scores need the (B, H, T, D) layout, so q, k, v are scattered into it and the output
        gathered back (MultiHeadAttention self-attention backends only)."""
        attn = self.attn
        H, Hkv, D = attn.n_head, attn.n_kv_head, attn.head_dim
        qkv = attn.qkv(x)  # (N, (H + 2 Hkv) D)
        full = qkv.new_zeros(B * T, qkv.size(1)).index_copy_(0, rows, qkv).view(B, T, -1)  # (B, T, (H + 2 Hkv) D)
        q, k, v = full.split((H * D, Hkv * D, Hkv * D), dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
        p = attn.dropout if attn.training else 0.0
        y = attn.attend(q, k, v, mask=mask, is_causal=False, dropout_p=p, **attn.scale)  # (B, H, T, D)
        y = y[rows // T, :, rows % T].reshape(-1, H * D)  # (N, H, D) -> (N, H D): the real queries only
        x = self.ln1(x + attn.resid_dropout(attn.proj(y)))
        return self.ln2(x + self.mlp(x))


class MaskedLMHead(nn.Module):
    """logits = LN(act(h W_t + b_t)) W_dec^T + b, W_dec (V, E) tied to the token embedding by default."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = Linear(cfg.n_embd, cfg.emb_dim)
        self.act = ACTIVATIONS[cfg.head_act]
        self.norm = nn.LayerNorm(cfg.emb_dim, eps=cfg.norm_eps)
        self.decoder = Linear(cfg.emb_dim, cfg.vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(h))))  # (..., V)


class ReplacedTokenHead(nn.Module):
    """ELECTRA's discriminator head: logit_t = act(h_t W_d + b_d) w_o + b_o, (B, T, C) -> (B, T)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = Linear(cfg.n_embd, cfg.n_embd)
        self.act = ACTIVATIONS[cfg.mlp]
        self.out = Linear(cfg.n_embd, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(h))).squeeze(-1)  # (B, T)


def span_boundary_states(
    hidden: torch.Tensor, boundaries: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """hidden (B, T, C), boundaries (B, T, 3) -> (h_left (N, C), h_right (N, C), offset (N,)).

    ``boundaries`` is (s - 1, e + 1, i - s) at the N masked positions and -1 elsewhere, as
    ``genlab.objectives.masked_lm.span_mask`` returns it; the positions are taken in row-major
    order, the order of ``labels[labels != -100]``. (The same gather as the objective's
    ``gather_span_boundaries``: models sit below objectives and cannot import it.)
    """
    selected = boundaries[..., 2] >= 0  # (B, T)
    rows = torch.arange(hidden.size(0), device=hidden.device)[:, None].expand(selected.shape)[selected]  # (N,)
    chosen = boundaries[selected]  # (N, 3)
    return hidden[rows, chosen[:, 0]], hidden[rows, chosen[:, 1]], chosen[:, 2]


class SpanBoundaryHead(nn.Module):
    """SpanBERT's SBO transform: y = LN(act(W_2 LN(act(W_1 [h_l; h_r; P_off] + b_1)) + b_2)), -> (N, E)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        C = cfg.n_embd
        self.pos = nn.Embedding(cfg.sbo_max_span, C)  # P: offset i - s of the token inside its span
        self.fc1 = Linear(3 * C, C)
        self.norm1 = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.fc2 = Linear(C, cfg.emb_dim)
        self.norm2 = nn.LayerNorm(cfg.emb_dim, eps=cfg.norm_eps)
        self.act = ACTIVATIONS[cfg.mlp]

    def forward(self, left: torch.Tensor, right: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        if offset.numel() and int(offset.max()) >= self.pos.num_embeddings:
            raise ValueError(
                f"a span offset of {int(offset.max())} does not fit the span boundary head's "
                f"{self.pos.num_embeddings} positions: mask shorter spans or raise sbo_max_span"
            )
        z = torch.cat([left, right, self.pos(offset)], dim=-1)  # (N, 3C)
        z = self.norm1(self.act(self.fc1(z)))  # (N, C)
        return self.norm2(self.act(self.fc2(z)))  # (N, E)


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
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(1 if cfg.share_layers else cfg.n_layer))
        if cfg.attention == "linformer" and cfg.linformer_share == "layer":
            tie_linformer_projections([b.attn for b in self.blocks])
        self.pooler = Linear(C, C) if cfg.pooler else None
        heads = set(cfg.heads)
        self.mlm = MaskedLMHead(cfg) if "mlm" in heads else None
        self.nsp = Linear(C, 2) if "nsp" in heads else None
        self.classifier = Linear(C, cfg.num_labels) if "sequence" in heads else None
        self.token_classifier = Linear(C, cfg.num_labels) if "token" in heads else None
        self.qa = Linear(C, 2) if "qa" in heads else None
        # Added after the original heads, so that existing configs keep their initial weights.
        cls_dense = "sequence" in heads and cfg.classifier != "pooler"
        self.classifier_dense = Linear(C, C) if cls_dense else None  # RoBERTa/ELECTRA/DistilBERT head
        self.sop = Linear(C, 2) if "sop" in heads else None
        self.rtd = ReplacedTokenHead(cfg) if "rtd" in heads else None
        self.sbo = SpanBoundaryHead(cfg) if "sbo" in heads else None
        self.reset_parameters()
        if self.mlm is not None and cfg.tie_embeddings:
            self.mlm.decoder.weight = self.tok_emb.weight

    @property
    def moe_layers(self) -> list[MoE]:
        """The blocks' mixture-of-experts FFNs (empty for a dense model)."""
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoE)]

    def shard_units(self) -> list[nn.Module]:
        """What FSDP shards one group at a time (training/parallel.py): each block, unless blocks share
        weights (ALBERT's one block, Linformer projections tied across layers): then none, and the
        whole model is one group."""
        cfg = self.config
        shared = cfg.share_layers or (cfg.attention == "linformer" and cfg.linformer_share == "layer")
        return [] if shared else list(self.blocks)

    def reset_parameters(self) -> None:
        """BERT initialisation: weights N(0, init_std), biases 0, LayerNorm 1 and 0, padding row 0
        (MoE routers and stacked expert weights alike)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, ExpertLinear, Router)):
                nn.init.normal_(module.weight, 0.0, self.config.init_std)
            if isinstance(module, (nn.Linear, ExpertLinear)) and module.bias is not None:
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
        global_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) 1 = token / 0 = padding, token_type_ids (B, T)
        -> last hidden states (B, T, C). Hidden states at padding positions are not meaningful.
        ``global_attention_mask`` (B, T) 1 = global token (attention=longformer only)."""
        return self._encode(input_ids, attention_mask, token_type_ids, global_attention_mask)[0]

    def _encode(self, input_ids, attention_mask=None, token_type_ids=None, global_attention_mask=None):
        """:meth:`encode` -> (hidden (B, T, C), the summed MoE aux loss or None for a dense model)."""
        cfg = self.config
        if global_attention_mask is not None and cfg.attention != "longformer":
            raise ValueError(f"global_attention_mask needs attention=longformer, not {cfg.attention}")
        T = input_ids.size(1)
        if input_ids.size(1) > cfg.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds the position table of {cfg.block_size}")
        if cfg.positions_from_mask and attention_mask is not None:
            # RoBERTa (fairseq's make_positions): count real tokens only, so left padding shifts nothing.
            positions = cfg.position_offset + (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        else:
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
        glob = None if global_attention_mask is None else global_attention_mask.bool()
        aux = None
        for i in range(cfg.n_layer):
            block = self.blocks[0 if cfg.share_layers else i]
            x = block(x, mask=mask, global_mask=glob)
            if isinstance(block.mlp, MoE):  # each application's balancing loss (a shared layer: every one)
                aux = block.mlp.aux_loss if aux is None else aux + block.mlp.aux_loss
        return x, aux

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
        *,
        span_boundaries: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
    ) -> BertOutput:
        """Encode and run ``heads`` (default: all of the config's heads; ``()`` for none).

        The ``sbo`` head runs only when ``span_boundaries`` (B, T, 3) is given: see
        :meth:`span_boundary_logits`. With MoE layers ``aux_loss`` holds their summed balancing loss."""
        heads = self.config.heads if heads is None else list(heads)
        missing = [h for h in heads if h not in self.config.heads]
        if missing:
            raise ValueError(f"head '{missing[0]}' is not part of this model (config.heads={self.config.heads})")
        h, aux = self._encode(input_ids, attention_mask, token_type_ids, global_attention_mask)
        out = BertOutput(hidden=h, pooled=self.pool(h) if self.pooler is not None else None, aux_loss=aux)
        if "mlm" in heads:
            out.mlm_logits = self.mlm(h)
        if "nsp" in heads:
            out.nsp_logits = self.nsp(out.pooled)
        if "sequence" in heads:
            out.logits = self.classify(h, out.pooled)
        if "token" in heads:
            out.token_logits = self.token_classifier(self.drop(h))
        if "qa" in heads:
            out.start_logits, out.end_logits = self.qa(h).unbind(-1)  # (B, T) each
        if "sop" in heads:
            out.sop_logits = self.sop(self.drop(out.pooled))
        if "rtd" in heads:
            out.rtd_logits = self.rtd(h)
        if "sbo" in heads and span_boundaries is not None:
            out.sbo_logits = self.span_boundary_logits(h, span_boundaries)
        return out

    def classify(self, hidden: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """The sequence head, (B, T, C) -> (B, L): from the pooler or from h[CLS] (``classifier``)."""
        act = CLASSIFIERS[self.config.classifier]
        if act is None:
            return self.classifier(self.drop(self.pool(hidden) if pooled is None else pooled))
        x = self.drop(act(self.classifier_dense(self.drop(hidden[:, 0]))))  # (B, C)
        return self.classifier(x)

    def span_boundary_logits(self, hidden: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
        """SpanBERT's span boundary objective: hidden (B, T, C) and boundaries (B, T, 3) from
        ``span_mask`` -> vocabulary logits (N, V) at the N masked positions (row-major order), so
        ``masked_lm_loss(logits, labels[labels != -100])`` is L_SBO."""
        if self.sbo is None:
            raise ValueError("this Bert has no span boundary head: add 'sbo' to heads")
        left, right, offset = span_boundary_states(hidden, boundaries)
        return self.mlm.decoder(self.sbo(left, right, offset))  # (N, V)

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

    def embed_packed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`embed` with the padding taken out: the same (B, C) unit embeddings (equal within
        fp32 rounding), for batches of texts of unequal length.

        The N = sum(mask) real tokens are packed into one (N, C) matrix; embeddings, every
        projection, MLP and LayerNorm run on it, and only attention scatters q, k, v into the
        padded (B, H, T, D) layout (:meth:`Block.forward_packed`). The work of all but attention
        falls from B T to N rows; a batch without padding takes :meth:`embed` itself. Efficient
        attentions (longformer, linformer, lsh) take :meth:`embed` too."""
        cfg = self.config
        B, T = input_ids.shape
        real = attention_mask.bool()
        if bool(real.all()) or cfg.attention not in ATTENTION or cfg.block_size < T:
            return self.embed(input_ids, attention_mask, token_type_ids)
        rows = real.flatten().nonzero().squeeze(1)  # (N,) flat positions b T + t of the real tokens
        if cfg.positions_from_mask:
            positions = cfg.position_offset + (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        else:
            positions = torch.arange(cfg.position_offset, cfg.position_offset + T, device=input_ids.device)
            positions = positions.expand(B, T)  # (B, T)
        x = self.tok_emb(input_ids.flatten()[rows]) + self.pos_emb(positions.flatten()[rows])  # (N, E)
        if self.type_emb is not None:
            types = None if token_type_ids is None else token_type_ids.flatten()[rows]
            x = x + (self.type_emb.weight[0] if types is None else self.type_emb(types))
        x = self.drop(self.emb_norm(x))
        if self.emb_proj is not None:
            x = self.emb_proj(x)  # (N, C)
        mask = padding_mask(attention_mask)  # (B, 1, 1, T)
        for i in range(cfg.n_layer):
            x = self.blocks[0 if cfg.share_layers else i].forward_packed(x, rows, B, T, mask)
        row = rows // T  # (N,) the text of each token
        e = x.new_zeros(B, x.size(1)).index_add_(0, row, x)  # (B, C) sum over each text's tokens
        e = e / real.sum(1, keepdim=True).to(x.dtype).clamp(min=1e-9)
        return F.normalize(e, p=2, dim=-1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --- fine-tuning: the encoder body of one Bert into another ---------------------------------


def encoder_keys(cfg: BertConfig) -> set[str]:
    """Parameter names of the encoder body (embeddings, layers, pooler): the model without heads."""
    with torch.device("meta"):
        return set(Bert(dataclasses.replace(cfg, heads=[])).state_dict())


def transfer_encoder(target: Bert, source: dict[str, torch.Tensor], where: str) -> list[str]:
    """Copy the encoder body of ``source`` (a Bert state dict) into ``target``; the target's heads
    (and its pooler, if the source has none) keep their fresh initialisation. Returns those
    names. CheckpointError (naming ``where``) when the bodies do not match."""
    body = encoder_keys(target.config)
    own = target.state_dict()
    fresh = [k for k in own if k not in source or k not in body]
    missing = [k for k in fresh if k in body and not k.startswith("pooler.")]
    if missing:
        raise CheckpointError(f"{where} does not hold this encoder: no weights for {missing[:3]}")
    for k in own:
        if k in source and k in body and source[k].shape != own[k].shape:
            raise CheckpointError(
                f"{where}: '{k}' has shape {tuple(source[k].shape)} but the model expects {tuple(own[k].shape)}"
            )
    target.load_state_dict({k: source[k] for k in own if k in source and k in body}, strict=False)
    return fresh


# --- ELECTRA: a generator and a discriminator that share their embeddings -------------------


def electra_pair(disc_cfg: BertConfig, gen_cfg: BertConfig) -> tuple[Bert, Bert]:
    """ELECTRA (Clark et al. 2020, arXiv:2003.10555): (generator, discriminator), two Bert models
    whose embedding modules are the same objects.

    The generator is a small masked LM (``mlm`` head), the discriminator detects replaced tokens
    (``rtd`` head). As in ELECTRA, they share the token, position and segment embeddings and the
    embedding LayerNorm (the official TensorFlow code builds both models' embeddings, LayerNorm
    included, in one ``electra/embeddings`` variable scope), so
    both losses train them; each model projects E -> its own width C when they differ (a smaller
    generator). The generator's masked-LM decoder stays tied to the shared token embedding.
    ConfigError when the two configs do not agree on the embeddings.
    """
    if "mlm" not in gen_cfg.heads:
        raise ConfigError(f"the ELECTRA generator needs the 'mlm' head, got heads={gen_cfg.heads}")
    if "rtd" not in disc_cfg.heads:
        raise ConfigError(f"the ELECTRA discriminator needs the 'rtd' head, got heads={disc_cfg.heads}")
    same = {
        "vocab_size": (gen_cfg.vocab_size, disc_cfg.vocab_size),
        "embedding size E": (gen_cfg.emb_dim, disc_cfg.emb_dim),
        "position table (block_size + position_offset)": (
            gen_cfg.block_size + gen_cfg.position_offset,
            disc_cfg.block_size + disc_cfg.position_offset,
        ),
        "position_offset": (gen_cfg.position_offset, disc_cfg.position_offset),
        "positions_from_mask": (gen_cfg.positions_from_mask, disc_cfg.positions_from_mask),
        "type_vocab_size": (gen_cfg.type_vocab_size, disc_cfg.type_vocab_size),
        "pad_token_id": (gen_cfg.pad_token_id, disc_cfg.pad_token_id),
        "norm_eps": (gen_cfg.norm_eps, disc_cfg.norm_eps),
    }
    for name, (g, d) in same.items():
        if g != d:
            raise ConfigError(
                f"the ELECTRA generator and discriminator share their embeddings but differ in {name}: "
                f"{g} vs {d} (for a smaller generator set its embedding_size to the discriminator's)"
            )
    disc, gen = Bert(disc_cfg), Bert(gen_cfg)
    gen.tok_emb, gen.pos_emb, gen.type_emb, gen.emb_norm = disc.tok_emb, disc.pos_emb, disc.type_emb, disc.emb_norm
    if gen_cfg.tie_embeddings:
        gen.mlm.decoder.weight = disc.tok_emb.weight
    return gen, disc


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
    one segment, positions from padding_idx + 1 = 2 counted over the real tokens, no NSP, the
    dense + tanh classifier on <s>; 124,645,632 / 124,697,433 as a masked LM."""
    return BertConfig(
        vocab_size=50265,
        type_vocab_size=1,
        pad_token_id=1,
        position_offset=2,
        positions_from_mask=True,
        norm_eps=1e-5,
        pooler=False,
        classifier="roberta",
        mlm_act="gelu",
    )


@register("distilbert-base")
def distilbert_base() -> BertConfig:
    """DistilBERT (Sanh et al. 2019, arXiv:1910.01108): BERT-base with 6 layers, no segment embeddings
    and no pooler (its classifier is dense + ReLU on [CLS]); 66,362,880 / 66,985,530 as a masked LM."""
    return BertConfig(n_layer=6, type_vocab_size=0, pooler=False, classifier="distilbert")


@register("minilm-l6")
def minilm_l6() -> BertConfig:
    """all-MiniLM-L6-v2 (Wang et al. 2020, arXiv:2002.10957; sentence-transformers): 6 x 384, 12 heads
    of 32, MLP 1536, BERT's uncased vocabulary; a sentence encoder, no heads; 22,713,216."""
    return BertConfig(n_layer=6, n_head=12, n_embd=384, heads=[])


@register("albert-base")
def albert_base() -> BertConfig:
    """ALBERT-base v2 (Lan et al. 2019, arXiv:1909.11942): 12 x 768 with one set of layer weights
    shared by all 12 layers, embeddings factorised to E = 128, a 30,000-token SentencePiece
    vocabulary, tanh-approximated GELU, no dropout (v2), masked LM + sentence-order prediction;
    11,683,584 with the pooler (the paper's "12M") / 11,813,810 as AlbertForPreTraining."""
    return BertConfig(
        vocab_size=30000,
        embedding_size=128,
        share_layers=True,
        mlp="gelu_tanh",
        dropout=0.0,
        attention_dropout=0.0,
        heads=["mlm", "sop"],
    )


@register("electra-small")
def electra_small() -> BertConfig:
    """ELECTRA-Small discriminator (Clark et al. 2020, arXiv:2003.10555; google/electra-small-discriminator):
    12 x 256, 4 heads, MLP 1024, embeddings E = 128 projected to 256, no pooler, replaced-token
    detection; 13,483,008 without heads (the paper's "14M") / 13,549,057 as ElectraForPreTraining."""
    return BertConfig(
        n_layer=12, n_head=4, n_embd=256, n_inner=1024, embedding_size=128, pooler=False,
        heads=["rtd"], classifier="electra", mlm_act="gelu",
    )  # fmt: skip


@register("electra-small-generator")
def electra_small_generator() -> BertConfig:
    """ELECTRA-Small's generator as released on the Hugging Face hub (google/electra-small-generator,
    config.json: 12 x 256, 4 heads, MLP 1024, E = 128): as wide as the discriminator, where the
    paper's Table 6 scales the Small generator's width, heads and MLP by 1/4. Shares
    its E = 128 embeddings with ``electra-small`` (:func:`electra_pair`); 13,546,682 as
    ElectraForMaskedLM, 23,122,875 for the pair."""
    return BertConfig(
        n_layer=12, n_head=4, n_embd=256, n_inner=1024, embedding_size=128, pooler=False,
        heads=["mlm"], classifier="electra", mlm_act="gelu",
    )  # fmt: skip


# Small CPU shapes for pretraining experiments (8,192-token vocabulary, 128-token windows).


@register("bert-mini")
def bert_mini() -> BertConfig:
    """4 x 256, 4 heads, MLP 1024, masked LM; 5,355,776 with the pooler / 5,430,272 with the MLM head."""
    return BertConfig(vocab_size=8192, block_size=128, n_layer=4, n_head=4, n_embd=256, heads=["mlm"])


@register("electra-mini")
def electra_mini() -> BertConfig:
    """ELECTRA discriminator shaped like ``bert-mini`` (4 x 256, E = 256, no pooler), replaced-token
    detection; pairs with ``electra-mini-generator``; 5,356,033."""
    return BertConfig(
        vocab_size=8192, block_size=128, n_layer=4, n_head=4, n_embd=256, pooler=False,
        heads=["rtd"], classifier="electra", mlm_act="gelu",
    )  # fmt: skip


@register("electra-mini-generator")
def electra_mini_generator() -> BertConfig:
    """The generator for ``electra-mini``: as deep (4 layers), half as wide (128, 2 heads, MLP 512;
    ELECTRA scales width, heads and MLP together, 1/4 to 1/2 working best), on the discriminator's
    E = 256 embeddings projected to 128; 2,998,656 with those shared embeddings, 867,712 without
    (6,223,745 for the pair)."""
    return BertConfig(
        vocab_size=8192, block_size=128, n_layer=4, n_head=2, n_embd=128, n_inner=512, embedding_size=256,
        pooler=False, heads=["mlm"], classifier="electra", mlm_act="gelu",
    )  # fmt: skip


@register("albert-mini")
def albert_mini() -> BertConfig:
    """ALBERT shaped like ``bert-mini``: 4 layers sharing one set of 256-wide weights, E = 128,
    tanh GELU, no dropout, masked LM + sentence-order prediction; 1,995,906."""
    return BertConfig(
        vocab_size=8192, block_size=128, n_layer=4, n_head=4, n_embd=256, embedding_size=128,
        share_layers=True, mlp="gelu_tanh", dropout=0.0, attention_dropout=0.0, heads=["mlm", "sop"],
    )  # fmt: skip


# Mixture-of-experts encoders (``moe``, layers/moe.py): every FFN a mixture of experts.


@register("bert-moe-micro")
def bert_moe_micro() -> BertConfig:
    """``bert-micro`` with MoE FFNs, for tests: 4 GELU experts of width 64, top-2 (2 x 64 = bert-micro's 128);
    51,138 parameters with the MLM and NSP heads, 34,370 active per token."""
    return dataclasses.replace(bert_micro(), moe=MoEConfig(num_experts=4, top_k=2, expert_hidden=64))


@register("bert-moe-mini")
def bert_moe_mini() -> BertConfig:
    """``bert-mini`` with MoE FFNs of the same active width: 8 GELU experts of 512, top-2 (2 x 512 =
    bert-mini's 1024), Switch balancing; 11,749,376 in all with the MLM head, 5,439,488 active per token."""
    return dataclasses.replace(bert_mini(), moe=MoEConfig(num_experts=8, top_k=2, expert_hidden=512))
