import dataclasses

import pytest
import torch

from genlab.core.registry import preset
from genlab.models import build_model
from genlab.models.gpt import GPT, GPTConfig


def param_count(name: str) -> int:
    with torch.device("meta"):
        return build_model(preset(name)).num_params()


def test_published_parameter_counts():
    assert param_count("gpt2") == 124_439_808
    assert abs(param_count("gpt1") - 117e6) / 117e6 < 0.01
    assert abs(param_count("gpt2-xl") - 1.56e9) / 1.56e9 < 0.01
    assert abs(param_count("gpt3-175b") - 175e9) / 175e9 < 0.01
    assert abs(param_count("gpt2-medium") - 355e6) / 355e6 < 0.01


@pytest.mark.slow
def test_gpt2_full_size_forward_backward():
    model = build_model(preset("gpt2"))
    ids = torch.randint(0, 50257, (1, 16))
    model(ids).logsumexp(-1).mean().backward()
    assert model.tok_emb.weight.grad is not None


def test_tied_embeddings_share_storage():
    m = GPT(preset("gpt-micro"))
    assert m.head.weight is m.tok_emb.weight
    untied = GPT(dataclasses.replace(preset("gpt-micro"), tie_embeddings=False))
    assert untied.num_params() == m.num_params() + 65 * 32


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"pos": "rope"},
        {"pos": "sinusoidal"},
        {"mlp": "swiglu", "norm": "rmsnorm", "bias": False},
        {"pos": "none"},
        {"pos": "alibi"},
        {"n_kv_head": 1},
        {"n_head": 4, "n_kv_head": 2, "pos": "alibi"},
        {"n_head": 4, "n_kv_head": 2, "pos": "rope"},
    ],
)
def test_eager_and_sdpa_models_agree(variant):
    cfg = dataclasses.replace(preset("gpt-micro"), **variant)
    torch.manual_seed(0)
    a = GPT(dataclasses.replace(cfg, attention="eager"))
    b = GPT(dataclasses.replace(cfg, attention="sdpa"))
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 65, (3, 20))
    torch.testing.assert_close(a(ids), b(ids), atol=1e-5, rtol=1e-5)


def test_causal_model_ignores_future_tokens():
    m = GPT(dataclasses.replace(preset("gpt-micro"), pos="rope")).eval()
    ids = torch.randint(0, 65, (1, 16))
    ids2 = ids.clone()
    ids2[0, 10:] = (ids2[0, 10:] + 1) % 65
    torch.testing.assert_close(m(ids)[:, :10], m(ids2)[:, :10])


def test_bad_configs():
    with pytest.raises(ValueError, match="pos"):
        GPTConfig(pos="alibi9")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="exceeds the context"):
        GPT(preset("gpt-micro"))(torch.zeros(1, 33, dtype=torch.long))


# --- grouped-query heads, ALiBi, rows of different lengths in one cache ---------------------


def test_grouped_query_attention_config_parameters_and_cache():
    base = dataclasses.replace(preset("gpt-char"), n_head=8)  # 8 heads of 16 dims
    mha, gqa, mqa = (GPT(dataclasses.replace(base, n_kv_head=h)) for h in (0, 2, 1))
    assert gqa.config.kv_heads == 2 and mha.config.kv_heads == 8
    assert set(gqa.state_dict()) == set(mha.state_dict())  # same keys, narrower qkv
    assert gqa.blocks[0].attn.qkv.weight.shape == ((8 + 2 * 2) * 16, 128)
    C, L = 128, base.n_layer
    assert mha.num_params() - gqa.num_params() == L * 2 * (8 - 2) * 16 * (C + 1)
    caches = [m.make_cache(2, 64).nbytes for m in (mha, gqa, mqa)]
    assert caches == [2 * L * 2 * h * 64 * 16 * 4 for h in (8, 2, 1)]  # the cache keeps Hkv heads only
    with pytest.raises(ValueError, match="n_head=8 is not divisible by n_kv_head=3"):
        dataclasses.replace(base, n_kv_head=3)
    with pytest.raises(ValueError, match="must be >= 0"):
        dataclasses.replace(base, n_kv_head=-1)


def test_alibi_model_has_no_position_table_and_ignores_future_tokens():
    m = GPT(dataclasses.replace(preset("gpt-micro"), pos="alibi")).eval()
    assert (
        not any("pos" in k for k in m.state_dict())
        and m.num_params() == GPT(dataclasses.replace(preset("gpt-micro"), pos="none")).num_params()
    )
    ids = torch.randint(0, 65, (1, 16))
    ids2 = ids.clone()
    ids2[0, 10:] = (ids2[0, 10:] + 1) % 65
    torch.testing.assert_close(m(ids)[:, :10], m(ids2)[:, :10])
    # One layer without positions sees its past as a set: shuffling the past keeps the last
    # logits. ALiBi's distances make the order count.
    shuffled = torch.cat([ids[:, :-1].flip(1), ids[:, -1:]], 1)
    for pos, same in (("none", True), ("alibi", False)):
        one = GPT(dataclasses.replace(preset("gpt-micro"), pos=pos, n_layer=1)).eval()
        assert torch.allclose(one(shuffled)[:, -1], one(ids)[:, -1], atol=1e-5) == same, pos


def _ragged_model(pos: str, attention: str) -> GPT:
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("gpt-micro"), n_head=4, n_kv_head=2, pos=pos, attention=attention, block_size=48)
    return GPT(cfg).eval()


RAGGED = [("learned", "sdpa"), ("rope", "sdpa"), ("alibi", "sdpa"), ("alibi", "eager")]


@pytest.mark.parametrize(("pos", "attention"), RAGGED)
def test_rows_of_different_lengths_in_one_cache_equal_each_row_alone(pos, attention):
    """Continuous batching: row 1 takes a new request while row 0 keeps decoding."""
    model = _ragged_model(pos, attention)
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randint(0, 65, (20,), generator=g) for _ in range(3))
    cache = model.make_cache(2, 48)
    model(torch.stack([a[:5], b[:5]]), cache=cache)
    cache.reset_rows([1])  # row 1's request ended; a new one (c) starts there
    out = model(torch.stack([a[5:8], c[:3]]), cache=cache)  # row 0 at positions 5..7, row 1 at 0..2
    torch.testing.assert_close(out[0], model(a[None, :8])[0, 5:8], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], model(c[None, :3])[0], atol=1e-5, rtol=0)
    assert cache.lengths.tolist() == [8, 3] and cache.length == 8
    for t in range(6):
        step = model(torch.stack([a[8 + t : 9 + t], c[3 + t : 4 + t]]), cache=cache)[:, -1]
        torch.testing.assert_close(step[0], model(a[None, : 9 + t])[0, -1], atol=1e-5, rtol=0)
        torch.testing.assert_close(step[1], model(c[None, : 4 + t])[0, -1], atol=1e-5, rtol=0)


def test_a_prompt_prefilled_alone_joins_a_running_batch():
    model = _ragged_model("rope", "sdpa")
    g = torch.Generator().manual_seed(2)
    a, c = torch.randint(0, 65, (20,), generator=g), torch.randint(0, 65, (20,), generator=g)
    cache = model.make_cache(2, 48)
    model(torch.stack([a[:9], a[:9]]), cache=cache)
    one = model.make_cache(1, 48)
    model(c[None, :4], cache=one)
    cache.write_rows([1], one)
    for t in range(4):
        step = model(torch.stack([a[9 + t : 10 + t], c[4 + t : 5 + t]]), cache=cache)[:, -1]
        torch.testing.assert_close(step[0], model(a[None, : 10 + t])[0, -1], atol=1e-5, rtol=0)
        torch.testing.assert_close(step[1], model(c[None, : 5 + t])[0, -1], atol=1e-5, rtol=0)


def test_hidden_states_come_out_in_a_model_output():
    from genlab.models.outputs import ModelOutput
    from genlab.objectives.causal_lm import causal_lm_loss

    model = GPT(preset("gpt-micro")).eval()
    ids = torch.randint(0, 65, (2, 9))
    out = model(ids, hidden_states=True)
    assert isinstance(out, ModelOutput) and out.aux_loss is None
    torch.testing.assert_close(out.logits, model(ids), rtol=0, atol=0)
    assert len(out.hidden_states) == model.config.n_layer + 1
    assert all(h.shape == (2, 9, model.config.n_embd) for h in out.hidden_states)
    torch.testing.assert_close(out.hidden_states[0], model.tok_emb(ids) + model.pos_emb(torch.arange(9)))
    torch.testing.assert_close(model.head(model.ln_f(out.hidden_states[-1])), out.logits)
    # an objective takes either form and computes the same loss
    wrapped = lambda x: model(x, hidden_states=True)
    batch = (ids[:, :-1], ids[:, 1:])
    torch.testing.assert_close(causal_lm_loss(wrapped, batch), causal_lm_loss(model, batch))
