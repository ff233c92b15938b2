"""Encoder-decoder models in the one decoding engine: cache vs none, batching, and transformers' generate().

The Hugging Face side is a small random T5 / BART built here, converted to genlab; both decode
the same sources and must return the same token ids.
"""

import dataclasses
import os

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.generation.decode import GenerationConfig, beam_search, generate, right_pad, stream
from genlab.models.convert import seq2seq as cv
from genlab.models.seq2seq import Seq2Seq

os.environ["HF_HUB_OFFLINE"] = "1"

SOURCES = [[5, 9, 14, 3, 22, 7, 1], [8, 30, 1], [11, 4, 19, 40, 2, 1]]  # different lengths, each ending in EOS


@pytest.fixture(scope="module", params=["t5", "bart"])
def model(request):
    cfg = preset("seq2seq-micro")
    if request.param == "bart":
        cfg = dataclasses.replace(preset("bart-cpu"), n_layer=2, n_embd=32, n_head=4, d_ff=48, vocab_size=96,
                                  block_size=40, dropout=0.0, pad_id=0, eos_id=1, decoder_start_id=1)  # fmt: skip
    torch.manual_seed(0)
    m = Seq2Seq(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.5) if p.dim() > 1 else None
    return m


def texts(gens):
    return [[g.tokens for g in per_prompt] for per_prompt in gens]


@pytest.mark.parametrize("kind", ["greedy", "sample", "beam"])
def test_kv_cache_decodes_what_the_plain_path_decodes(model, kind):
    settings = {
        "greedy": dict(temperature=0.0),
        "sample": dict(temperature=1.0, top_k=20, seed=3, num_return_sequences=2),
        "beam": dict(num_beams=4, num_return_sequences=3),
    }
    cfg = GenerationConfig(max_new_tokens=10, eos_id=1, **settings[kind])
    cached = generate(model, SOURCES, cfg)
    plain = generate(model, SOURCES, dataclasses.replace(cfg, use_cache=False))
    assert texts(cached) == texts(plain)
    if kind == "beam":
        for a, b in zip(cached, plain):
            assert [g.score for g in a] == pytest.approx([g.score for g in b], abs=1e-5)


@pytest.mark.parametrize("beams", [1, 3])
def test_batched_sources_of_different_lengths_decode_as_alone(model, beams):
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.0, num_beams=beams, eos_id=1)
    together = texts(generate(model, SOURCES, cfg))
    alone = [texts(generate(model, [s], cfg))[0] for s in SOURCES]
    assert together == alone


def test_the_encoder_runs_once_and_the_memory_is_projected_once_per_layer(model, monkeypatch):
    calls = {"encode": 0, "kv": 0}
    encode = model.encode

    def counting_encode(*args, **kwargs):
        calls["encode"] += 1
        return encode(*args, **kwargs)

    monkeypatch.setattr(model, "encode", counting_encode)
    hooks = [
        b.cross.kv.register_forward_hook(lambda *_: calls.__setitem__("kv", calls["kv"] + 1)) for b in model.decoder
    ]
    try:
        beam_search(model, SOURCES, GenerationConfig(max_new_tokens=6, num_beams=4, eos_id=None))
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"encode": 1, "kv": model.config.decoder_layers}


def test_stream_pieces_concatenate_to_the_greedy_generation(model):
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.0, eos_id=1)
    decode = lambda ids: " ".join(map(str, ids))
    (gen,) = generate(model, SOURCES[:1], cfg, decode=decode)[0]
    assert "".join(stream(model, SOURCES[0], cfg, decode)) == gen.text


def test_bad_input_is_a_one_line_error(model):
    block = model.config.block_size
    with pytest.raises(ConfigError, match="input 1 is empty"):
        generate(model, [[3, 4], []], GenerationConfig(max_new_tokens=4))
    with pytest.raises(ConfigError, match=f"exceeds the encoder's context of {block}.*'truncate'"):
        generate(model, [[3] * (block + 1)], GenerationConfig(max_new_tokens=4))
    with pytest.raises(ConfigError, match="decoder's context"):
        generate(model, [[3, 4]], GenerationConfig(max_new_tokens=block))
    with pytest.raises(ConfigError, match="'window' context policy is for decoder-only"):
        generate(model, [[3, 4]], GenerationConfig(max_new_tokens=4, context="window"))
    long = [3] * (block + 5)
    cut = GenerationConfig(max_new_tokens=4, temperature=0.0, context="truncate")
    assert texts(generate(model, [long], cut)) == texts(generate(model, [long[:block]], cut))


def test_right_pad():
    ids, mask = right_pad([[4, 5, 6], [7]], pad_id=9)
    assert ids.tolist() == [[4, 5, 6], [7, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


# --- against transformers' generate() ------------------------------------------------------

transformers = pytest.importorskip("transformers")
HF_SMALL = {
    "t5": ("T5Config", "T5ForConditionalGeneration",
           dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1,
                decoder_start_token_id=0, initializer_factor=4.0)),
    "bart": ("BartConfig", "BartForConditionalGeneration",
             dict(vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=40,
                  pad_token_id=0, bos_token_id=None, eos_token_id=1, decoder_start_token_id=1,
                  forced_eos_token_id=None, init_std=0.2)),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(HF_SMALL))
def pair(request):
    config_cls, model_cls, kwargs = HF_SMALL[request.param]
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs)).eval()
    with torch.no_grad():  # EOS likely enough that hypotheses finish at different lengths, some not at all
        if request.param == "t5":
            hf.shared.weight[1] *= 6.0
        else:
            hf.final_logits_bias[0, 1] = 1.5
    ours = cv.seq2seq_from_hf_state(hf.state_dict(), cv.hf_config_to_genlab(hf.config.to_dict()))
    return hf, ours


def hf_generate(hf, sources, **kwargs) -> list[list[int]]:
    """transformers' output rows without the start token, cut after the first EOS."""
    ids, mask = right_pad(sources, hf.config.pad_token_id)
    mask = torch.ones_like(ids) if mask is None else mask
    out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, **kwargs)
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(row[: row.index(1) + 1] if 1 in row else row)
    return rows


def test_greedy_equals_transformers_generate(pair):
    hf, ours = pair
    expected = hf_generate(hf, SOURCES, max_new_tokens=12, num_beams=1)
    got = generate(ours, SOURCES, GenerationConfig(max_new_tokens=12, temperature=0.0, eos_id=1))
    assert [g[0].tokens + ([1] if g[0].finish_reason == "eos" else []) for g in got] == expected
    assert len({len(r) for r in expected}) > 1  # rows finished at different steps


@pytest.mark.parametrize("length_penalty", [1.0, 0.6, 2.0])
def test_beam_4_equals_transformers_generate(pair, length_penalty):
    """num_beams=4, early_stopping=False (transformers' default), n-best 3, batched sources."""
    hf, ours = pair
    kw = dict(max_new_tokens=12, num_beams=4, num_return_sequences=3, length_penalty=length_penalty)
    expected = hf_generate(hf, SOURCES, early_stopping=False, **kw)
    got = beam_search(ours, SOURCES, GenerationConfig(eos_id=1, **kw))
    assert [g.tokens for per_prompt in got for g in per_prompt] == expected
    assert {g.finish_reason for per_prompt in got for g in per_prompt} == {"eos", "length"}
