"""T5 / BART / PEGASUS / Marian interop: logits equal to transformers' both ways, small random configs.

Nothing touches the hub: each Hugging Face model is built here from a small config.
"""

import os

import pytest
import torch

from genlab.core.errors import CheckpointError, ConfigError
from genlab.core.registry import preset
from genlab.models.convert import seq2seq as cv
from genlab.models.seq2seq import Seq2Seq

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
SMALL = dict(vocab_size=60, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=40,
             pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=None)  # fmt: skip
T5_SMALL = dict(vocab_size=60, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=16)  # fmt: skip

#: name -> (config class, model class, config kwargs)
FAMILIES = {
    "t5": ("T5Config", "T5ForConditionalGeneration", T5_SMALL),
    "t5-v1_1": ("T5Config", "T5ForConditionalGeneration",
                {**T5_SMALL, "d_kv": 16, "num_heads": 3, "feed_forward_proj": "gated-gelu",
                 "tie_word_embeddings": False}),
    "bart": ("BartConfig", "BartForConditionalGeneration", SMALL),
    "pegasus": ("PegasusConfig", "PegasusForConditionalGeneration",
                {**SMALL, "scale_embedding": True, "activation_function": "relu"}),
    "marian": ("MarianConfig", "MarianMTModel", {**SMALL, "scale_embedding": True, "activation_function": "swish"}),
}  # fmt: skip


def hf_model(name: str, seed: int = 0, **overrides):
    config_cls, model_cls, kwargs = FAMILIES[name]
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**{**kwargs, **overrides})).eval()
    with torch.no_grad():  # norms and the logits bias away from their 1 / 0 init, so the maps are tested
        for key, p in model.named_parameters():
            if "norm" in key and p.dim() == 1:
                p.normal_(1.0, 0.2)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_()
    return model


def inputs(vocab: int = 60):
    g = torch.Generator().manual_seed(1)
    src = torch.randint(2, vocab, (2, 9), generator=g)
    mask = torch.ones_like(src)
    mask[1, 6:] = 0
    src[1, 6:] = 0
    return src, mask, torch.randint(2, vocab, (2, 7), generator=g)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_hf_to_genlab_logits_match(name):
    hf = hf_model(name)
    cfg = cv.hf_config_to_genlab(hf.config.to_dict())
    ours = cv.seq2seq_from_hf_state(hf.state_dict(), cfg)
    src, mask, tgt = inputs()
    with torch.no_grad():
        expected = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
        got = ours(src, mask, tgt).logits
    assert expected.abs().max() > 1.0  # not a degenerate model
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_genlab_to_hf_logits_match(name):
    cfg = cv.hf_config_to_genlab(hf_model(name).config.to_dict())
    torch.manual_seed(2)
    ours = Seq2Seq(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0.0, 0.3)
        if ours.final_logits_bias is not None:
            ours.final_logits_bias.normal_()
    hf_cfg = cv.genlab_config_to_hf(cfg)
    config_cls, model_cls, _ = FAMILIES[name]
    kwargs = {k: v for k, v in hf_cfg.items() if k not in ("architectures", "model_type", "dtype")}
    hf = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs)).eval()
    hf.load_state_dict(cv.genlab_state_to_hf(ours.state_dict(), cfg), strict=True)
    src, mask, tgt = inputs()
    with torch.no_grad():
        expected = ours(src, mask, tgt).logits
        got = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["t5", "bart"])
def test_files_round_trip_through_from_pretrained(name, tmp_path):
    hf = hf_model(name)
    hf.save_pretrained(tmp_path / "hf")
    ours = cv.load_hf_seq2seq(tmp_path / "hf")
    cv.write_hf_seq2seq(ours, tmp_path / "back")
    back = getattr(transformers, FAMILIES[name][1]).from_pretrained(tmp_path / "back").eval()
    src, mask, tgt = inputs()
    with torch.no_grad():
        expected = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
        torch.testing.assert_close(ours(src, mask, tgt).logits, expected, rtol=0, atol=ATOL)
        torch.testing.assert_close(back(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits, expected,
                                   rtol=0, atol=ATOL)  # fmt: skip


def test_what_hugging_face_cannot_hold_is_a_one_line_error():
    with pytest.raises(ConfigError, match="sinusoid='interleaved'"):
        cv.genlab_config_to_hf(preset("transformer-base"))
    with pytest.raises(ConfigError, match="gpt2 checkpoint"):
        cv.hf_config_to_genlab({"model_type": "gpt2"})
    cfg = cv.hf_config_to_genlab(hf_model("bart").config.to_dict())
    state = cv.genlab_state_to_hf(Seq2Seq(cfg).state_dict(), cfg)
    state.pop("model.encoder.layers.0.fc1.weight")
    with pytest.raises(CheckpointError, match="missing"):
        cv.hf_state_to_genlab(state, cfg)
