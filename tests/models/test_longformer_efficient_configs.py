"""Efficient attention chosen by config in GPT and BERT (longformer, linformer, lsh, reversible)."""

import dataclasses

import pytest
import torch

from genlab.core.config import from_dict
from genlab.core.errors import ConfigError
from genlab.models.bert import Bert, BertConfig
from genlab.models.gpt import GPT, GPTConfig

SMALL_GPT = dict(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=16)
SMALL_BERT = dict(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=16, heads=["mlm"])


def _ids(B=2, T=24, V=40, seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "opts",
    [
        {"attention": "longformer", "attention_window": 6},
        {"attention": "longformer", "attention_window": 4, "attention_dilation": 2, "pos": "rope"},
        {"attention": "lsh", "lsh_buckets": 4, "lsh_rounds": 2, "lsh_chunk": 8},
        {"attention": "lsh", "lsh_buckets": 4, "reversible": True, "ff_chunks": 3},
        {"attention": "longformer", "attention_window": 8, "reversible": True},
    ],
)
def test_gpt_trains_with_each_causal_backend(opts):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL_GPT, **opts))
    ids = _ids()
    logits = model(ids)
    assert logits.shape == (2, 24, 40)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_gpt_longformer_is_causal_and_a_wide_window_is_full_attention():
    torch.manual_seed(0)
    full = GPT(GPTConfig(**SMALL_GPT)).double().eval()
    wide = GPT(GPTConfig(**SMALL_GPT, attention="longformer", attention_window=64)).double().eval()
    assert set(wide.state_dict()) == set(full.state_dict())  # same keys: qkv, proj
    wide.load_state_dict(full.state_dict())
    ids = _ids()
    torch.testing.assert_close(wide(ids), full(ids), atol=1e-6, rtol=1e-6)
    narrow = GPT(GPTConfig(**SMALL_GPT, attention="longformer", attention_window=3)).double().eval()
    narrow.load_state_dict(full.state_dict())
    changed = ids.clone()
    changed[:, 15:] = (changed[:, 15:] + 1) % 40
    torch.testing.assert_close(narrow(ids)[:, :15], narrow(changed)[:, :15], atol=0, rtol=0)


def test_gpt_longformer_kv_cache_decoding_equals_full_forward():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL_GPT, attention="longformer", attention_window=5)).double().eval()
    ids = _ids(T=20)
    full = model(ids)
    cache = model.make_cache(2, 20, dtype=torch.float64)
    steps = [model(ids[:, :7], cache=cache)]
    steps += [model(ids[:, t : t + 1], cache=cache) for t in range(7, 20)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-6, rtol=1e-6)


def test_gpt_lsh_kv_cache_decoding_equals_a_forward_over_the_prefix():
    """One layer: each step equals a forward over the tokens so far (not over the whole sequence:
    later tokens move the chunk boundaries of causal LSH, see layers/efficient/lsh.py; for the
    same reason deeper layers read cached states that a longer forward would compute a little
    differently)."""
    torch.manual_seed(0)
    cfg = GPTConfig(**{**SMALL_GPT, "n_layer": 1}, attention="lsh", lsh_buckets=4, lsh_chunk=4, pos="rope")
    model = GPT(cfg).double().eval()
    for block in model.blocks:
        block.attn.seed = 3  # the same hashing at every call
    ids = _ids(T=18)
    cache = model.make_cache(2, 18, dtype=torch.float64)
    torch.testing.assert_close(model(ids[:, :6], cache=cache), model(ids[:, :6]), atol=1e-6, rtol=1e-6)
    for t in range(6, 18):
        step = model(ids[:, t : t + 1], cache=cache)
        torch.testing.assert_close(step, model(ids[:, : t + 1])[:, -1:], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "opts",
    [
        {"attention": "longformer", "attention_window": 6, "ff_chunks": 2},
        {"attention": "lsh", "lsh_buckets": 4, "lsh_chunk": 8, "dropout": 0.2},  # rotations and dropout from the RNG
    ],
)
def test_reversible_gpt_recomputing_backward_equals_ordinary_autograd_fp64(opts):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SMALL_GPT, reversible=True, **opts)).double()
    ids = _ids()

    def grads(hidden_states):
        torch.manual_seed(1)
        model.zero_grad()
        out = model(ids, hidden_states=hidden_states)  # hidden_states: the block-by-block path
        logits = out.logits if hidden_states else out
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    (l_rev, g_rev), (l_plain, g_plain) = grads(False), grads(True)
    torch.testing.assert_close(l_rev, l_plain, atol=1e-10, rtol=1e-10)
    for a, b in zip(g_rev, g_plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize(
    "opts",
    [
        {"attention": "longformer", "attention_window": 6},
        {"attention": "linformer", "linformer_k": 8},
        {"attention": "linformer", "linformer_k": 8, "linformer_share": "kv"},
        {"attention": "lsh", "lsh_buckets": 4, "lsh_chunk": 8},
    ],
)
def test_bert_trains_with_each_bidirectional_backend(opts):
    torch.manual_seed(0)
    model = Bert(BertConfig(**SMALL_BERT, **opts))
    ids = _ids()
    mask = torch.ones(2, 24, dtype=torch.long)
    mask[1, 20:] = 0
    out = model(ids, attention_mask=mask)
    out.mlm_logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "pooler" not in n)


def test_bert_linformer_layerwise_sharing_ties_one_projection():
    model = Bert(BertConfig(**SMALL_BERT, attention="linformer", linformer_k=8, linformer_share="layer"))
    assert model.blocks[0].attn.seq is model.blocks[1].attn.seq
    assert model.blocks[0].attn.seq.f is None


def test_default_configs_keep_their_keys_and_numbers():
    torch.manual_seed(0)
    a = GPT(GPTConfig(**SMALL_GPT))
    torch.manual_seed(0)
    b = GPT(dataclasses.replace(GPTConfig(**SMALL_GPT), attention="sdpa"))
    assert list(a.state_dict()) == list(b.state_dict())
    ids = _ids()
    torch.testing.assert_close(a(ids), b(ids), atol=0, rtol=0)


def test_dotted_overrides_and_one_line_errors():
    cfg = from_dict(GPTConfig, {**SMALL_GPT, "attention": "longformer", "attention_window": 8})
    assert isinstance(GPT(cfg).blocks[0].attn.window, int)
    with pytest.raises(ConfigError, match="not defined for a causal GPT"):
        GPTConfig(**SMALL_GPT, attention="linformer")
    with pytest.raises(ConfigError, match="even count"):
        GPTConfig(**SMALL_GPT, attention="lsh", lsh_buckets=5)
    with pytest.raises(ConfigError, match="even w"):
        BertConfig(**SMALL_BERT, attention="longformer", attention_window=5)
    with pytest.raises(ConfigError, match="alibi"):
        GPTConfig(**SMALL_GPT, attention="longformer", pos="alibi")
    with pytest.raises(ConfigError, match="grouped"):
        GPTConfig(**SMALL_GPT, attention="lsh", n_kv_head=1)
    with pytest.raises(ValueError, match="fixed length of 32"):
        model = Bert(BertConfig(**SMALL_BERT, attention="linformer", linformer_k=4))
        model.blocks[0].attn(torch.randn(1, 33, 16))
