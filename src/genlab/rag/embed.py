"""The embedding pass of ingest: the encoder a knowledge base is built with, and how it runs.

Two ways to make it faster, one exact and one not:

- **packed** (always on): a batch of chunks of unequal length is encoded with its padding taken
  out of every layer but attention (:meth:`genlab.models.bert.Bert.embed_packed`): the same
  vectors as the plain padded pass within fp32 rounding (tested), for less work when a batch
  mixes lengths. Chunks are sorted by length first (as sentence-transformers does), so inside an
  ingest group the padding is small and so is the gain; a batch without padding runs the plain
  path.
- **int8** (opt in: ``--embed-model minilm+int8``): dynamic quantisation of every Linear layer
  (``torch.ao.quantization.quantize_dynamic``, int8 weights per output channel, activations
  quantised per batch; Jacob et al. 2018, arXiv:1712.05877) — not the same vectors: its
  retrieval quality is measured beside fp32 in ``benchmarks/rag.py``. An index records the
  encoder it was built with under its name (``all-MiniLM-L6-v2+int8``), so a query encoder of
  the other kind is refused by the model check of :class:`genlab.rag.retrieve.Retriever`.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import torch
import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.layers.linear import Linear

#: Encoder variants by the suffix of the model argument ("minilm+int8").
QUANTIZE = ("int8",)


def packed_embeddings(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Unit sentence embeddings (B, C) by the packed path (the ``pool`` of ``embed_texts``)."""
    return model.embed_packed(input_ids, attention_mask, token_type_ids)


def embed_passages(encoder, texts: list[str], batch_size: int = 32, max_length: int | None = None) -> np.ndarray:
    """(N, C) float32 unit embeddings of ``texts`` (truncated to ``max_length``), by the packed path."""
    from genlab.eval.embeddings import embed_texts

    return embed_texts(encoder, texts, batch_size, max_length, True, pool=packed_embeddings)[0]


def _plain_linears(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose genlab :class:`Linear` layers are plain ``nn.Linear`` (same
    weights): quantize_dynamic swaps exact ``nn.Linear`` types only."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Linear):
                plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                plain.weight, plain.bias = child.weight, child.bias
                setattr(module, name, plain)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Linear layer dynamically quantised to int8 (weights per output
    channel; activations per batch), for CPU inference; the original is left as it was."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        q = quantize_dynamic(_plain_linears(model).eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return q.eval()


def split_variant(arg: str) -> tuple[str, str | None]:
    """``"minilm+int8"`` -> (``"minilm"``, ``"int8"``); ``"minilm"`` -> (``"minilm"``, None)."""
    base, sep, variant = str(arg).rpartition("+")
    if not sep or variant not in QUANTIZE:
        return str(arg), None  # no variant (a path may hold a "+" of its own)
    if not base:
        raise ConfigError(f"'{arg}' names no model before +{variant}: use e.g. minilm+{variant}")
    return base, variant


def load_rag_encoder(arg: str):
    """The encoder for ``arg``: a model of :func:`genlab.runs.encoders.load_encoder`, with an optional
    ``+int8`` suffix that quantises it (its ``source`` then ends in ``+int8``)."""
    from genlab.runs.encoders import load_encoder

    base, variant = split_variant(arg)
    encoder = load_encoder(base)
    if variant == "int8":
        encoder = dataclasses.replace(encoder, model=quantize_int8(encoder.model), source=f"{encoder.source}+int8")
    return encoder
