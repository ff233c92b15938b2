"""The embedding pass: the packed (unpadded) BERT path equals the plain padded one; int8 is opt-in,
close to fp32, and an index built with it refuses an fp32 query encoder (and the other way)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_ingest import tiny_encoder, write

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.eval.embeddings import embed_texts
from genlab.models.bert import Bert, BertConfig
from genlab.rag.embed import embed_passages, quantize_int8, split_variant
from genlab.rag.ingest import ingest, model_info
from genlab.rag.retrieve import Retriever
from genlab.rag.store import Store


def ragged(B: int = 5, T: int = 17, vocab: int = 128, lengths=(17, 3, 9, 16, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return ids * mask, mask  # (B, T): right padding with id 0


VARIANTS = {
    "bert-micro": {},
    "eager attention": {"attention": "eager"},
    "roberta positions": {"position_offset": 2, "positions_from_mask": True, "pad_token_id": 1},
    "no segments": {"type_vocab_size": 0},
    "albert (E < C, shared layers)": {"embedding_size": 16, "share_layers": True, "mlp": "gelu_tanh"},
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_embed_packed_equals_embed(name):
    torch.manual_seed(0)
    model = Bert(dataclasses.replace(preset("bert-micro"), **VARIANTS[name])).eval()
    ids, mask = ragged()
    types = (torch.arange(ids.size(1)) >= 4).long().expand_as(ids) * mask
    with torch.inference_mode():
        for tt in (None, types):
            ref = model.embed(ids, mask, tt)  # (B, C) the plain padded path
            fast = model.embed_packed(ids, mask, tt)
            torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    # a batch without padding and an efficient attention take the plain path itself
    full = torch.ones_like(mask)
    with torch.inference_mode():
        assert torch.equal(model.embed_packed(ids, full), model.embed(ids, full))


def test_embed_packed_falls_back_for_efficient_attention():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=16, heads=[], attention="linformer",
                     linformer_k=8)  # fmt: skip
    model = Bert(cfg).eval()
    ids, mask = ragged(3, 32, 64, (32, 5, 20))
    with torch.inference_mode():
        assert torch.equal(model.embed_packed(ids, mask), model.embed(ids, mask))


def test_embed_passages_equals_embed_texts_on_texts_of_unequal_length():
    enc = tiny_encoder()
    long = "a much longer passage about the apple tree and its red fruit " * 4
    texts = ["a short one.", long, "mid length text here"]
    texts = texts * 3  # batches of 2 mix lengths
    ref = embed_texts(enc, texts, 2, enc.max_length, True)[0]
    fast = embed_passages(enc, texts, 2, enc.max_length)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)
    assert fast.dtype == np.float32 and fast.shape == (9, enc.dim)


def test_int8_is_close_to_fp32_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = Bert(dataclasses.replace(preset("bert-micro"), n_embd=64, n_head=4)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_int8(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "Linear" in type(q.blocks[0].attn.qkv).__name__ and type(q.blocks[0].attn.qkv).__module__.startswith(
        "torch.ao.nn.quantized"
    )
    ids, mask = ragged()
    with torch.inference_mode():
        ref, out = model.embed(ids, mask), q.embed_packed(ids, mask)
    cos = (ref * out).sum(-1)  # unit vectors
    assert float(cos.min()) > 0.98
    assert not torch.equal(ref, out)  # int8 is an approximation, not the same vectors


def test_variant_names():
    assert split_variant("minilm+int8") == ("minilm", "int8")
    assert split_variant("minilm") == ("minilm", None)
    assert split_variant("runs/a+b") == ("runs/a+b", None)  # a path with a "+" of its own
    with pytest.raises(ConfigError, match="names no model"):
        split_variant("+int8")


def test_an_int8_index_refuses_an_fp32_query_encoder_and_back(tmp_path):
    fp32 = tiny_encoder("tiny")
    int8 = dataclasses.replace(fp32, model=quantize_int8(fp32.model), source="tiny+int8")
    write(tmp_path / "kb" / "a.md", "# Apple\n\nThe apple is a red fruit.\n")
    with Store.open(tmp_path / "q8", create=True) as store:
        ingest(store, int8, [tmp_path / "kb"], model_arg="tiny+int8", progress=False)
        assert store.model().name == "tiny+int8"
        assert Retriever(store, int8, model_info(int8, "tiny+int8")).search("red fruit", "dense", k=1)
        with pytest.raises(ConfigError, match=r"built with embeddings of tiny\+int8 .*query model is tiny "):
            Retriever(store, fp32, model_info(fp32, "tiny"))
        with pytest.raises(ConfigError, match=r"tiny\+int8"):  # ingesting more with fp32 is refused too
            ingest(store, fp32, [tmp_path / "kb"], model_arg="tiny", progress=False)
    with Store.open(tmp_path / "fp32", create=True) as store:
        ingest(store, fp32, [tmp_path / "kb"], model_arg="tiny", progress=False)
        with pytest.raises(ConfigError, match=r"query with --embed-model tiny,"):
            Retriever(store, int8, model_info(int8, "tiny+int8"))
