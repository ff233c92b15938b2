"""Efficient attention: sub-quadratic self-attention modules that stand in for MultiHeadAttention.

    longformer   sliding window (+ dilation, + global tokens)   causal and bidirectional   sliding_window.py
    linformer    keys/values projected along time to k          bidirectional only          linformer.py
    lsh          Reformer's hashed, sorted, chunked attention    causal and bidirectional   lsh.py

and reversible residual layers with chunked feed-forward (reversible.py). A model picks one
with ``attention=<name>``; :func:`efficient_attention` builds it from the model's options and
:func:`check_efficient` turns a combination a backend does not define into a one-line
ConfigError. Unlike the functions of ``layers.attention.ATTENTION`` these are modules (Linformer
learns its projections, LSH has its own shared query-key projection), with MultiHeadAttention's
``forward(x, mask=None, rotary=None, cache=None, layer=0, bias=None)``.
"""

from __future__ import annotations

import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.layers.efficient.linformer import LinformerAttention, SequenceProjection
from genlab.layers.efficient.lsh import LSHAttention
from genlab.layers.efficient.sliding_window import LongformerAttention

#: name -> the attention directions it defines.
EFFICIENT_ATTENTION: dict[str, tuple[str, ...]] = {
    "longformer": ("causal", "bidirectional"),
    "linformer": ("bidirectional",),
    "lsh": ("causal", "bidirectional"),
}

LINFORMER_SHARING = ["none", "kv", "layer"]  # E and F per layer; E = F per layer; one E for every layer


def check_efficient(
    kind: str, opts: dict, *, causal: bool, family: str, n_kv_head: int = 0, n_head: int = 0, pos: str = ""
) -> None:
    """ConfigError when ``kind`` is not defined for this model (direction, grouped heads, dense
    biases) or an option of ``opts`` (see :func:`options`) is out of range."""
    if kind not in EFFICIENT_ATTENTION:
        return
    for name in ("window", "dilation", "linformer_k", "lsh_buckets", "lsh_rounds", "lsh_chunk"):
        if opts[name] < 1:
            raise ConfigError(f"{name}={opts[name]} must be at least 1")
    if kind == "longformer" and not causal and opts["window"] % 2:
        raise ConfigError(f"attention_window={opts['window']}: a bidirectional window is w/2 each side, use an even w")
    if kind == "lsh" and opts["lsh_buckets"] > 1 and opts["lsh_buckets"] % 2:
        raise ConfigError(f"lsh_buckets={opts['lsh_buckets']}: buckets come in +/- pairs, use an even count (or 1)")
    if opts["linformer_share"] not in LINFORMER_SHARING:
        raise ConfigError(f"linformer_share='{opts['linformer_share']}' is not one of {LINFORMER_SHARING}")
    direction = "causal" if causal else "bidirectional"
    if direction not in EFFICIENT_ATTENTION[kind]:
        others = sorted(k for k, d in EFFICIENT_ATTENTION.items() if direction in d)
        raise ConfigError(f"attention={kind} is not defined for a {direction} {family}: use one of {others}")
    if kind in ("lsh", "linformer") and n_kv_head and n_kv_head != n_head:
        raise ConfigError(f"attention={kind} has no grouped key/value heads: set n_kv_head=0")
    if pos == "alibi":
        raise ConfigError(f"attention={kind} takes no dense (T, T) bias: use pos=rope or pos=learned, not alibi")


def efficient_attention(
    kind: str,
    dim: int,
    n_head: int,
    *,
    causal: bool,
    seq_len: int,
    window: int = 256,
    dilation: int = 1,
    global_projections: bool = False,
    linformer_k: int = 256,
    linformer_share: str = "none",
    lsh_buckets: int = 32,
    lsh_rounds: int = 4,
    lsh_chunk: int = 64,
    n_kv_head: int | None = None,
    bias: bool = True,
    dropout: float = 0.0,
    attn_dropout: float | None = None,
) -> nn.Module:
    """The self-attention module ``kind`` (a key of EFFICIENT_ATTENTION) with these options."""
    common = dict(bias=bias, dropout=dropout, attn_dropout=attn_dropout)
    if kind == "longformer":
        return LongformerAttention(
            dim, n_head, window, causal=causal, dilation=dilation, global_projections=global_projections,
            n_kv_head=n_kv_head, **common,
        )  # fmt: skip
    if kind == "linformer":
        if linformer_share not in LINFORMER_SHARING:
            raise ConfigError(f"linformer_share='{linformer_share}' is not one of {LINFORMER_SHARING}")
        projection = SequenceProjection(seq_len, linformer_k, share_kv=linformer_share != "none")
        return LinformerAttention(dim, n_head, seq_len, linformer_k, causal=causal, projection=projection, **common)
    if kind == "lsh":
        return LSHAttention(
            dim, n_head, n_buckets=lsh_buckets, n_rounds=lsh_rounds, chunk=lsh_chunk, causal=causal, **common
        )
    raise ConfigError(f"unknown efficient attention '{kind}'; choose from {sorted(EFFICIENT_ATTENTION)}")


def options(cfg) -> dict:
    """The efficient-attention options of a model config (GPTConfig, BertConfig) by their field names."""
    return {
        "window": cfg.attention_window,
        "dilation": cfg.attention_dilation,
        "global_projections": getattr(cfg, "global_projections", False),
        "linformer_k": cfg.linformer_k,
        "linformer_share": cfg.linformer_share,
        "lsh_buckets": cfg.lsh_buckets,
        "lsh_rounds": cfg.lsh_rounds,
        "lsh_chunk": cfg.lsh_chunk,
    }


def tie_linformer_projections(attns: list[nn.Module]) -> None:
    """Layerwise sharing: every Linformer layer uses the first one's E (= F)."""
    for attn in attns[1:]:
        attn.seq = attns[0].seq
