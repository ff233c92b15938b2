"""genlab's Bert with Longformer attention against transformers' LongformerModel (same weights)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from genlab.core.errors import ConfigError  # noqa: E402
from genlab.models.bert import Bert, BertConfig  # noqa: E402
from genlab.models.convert import longformer as convert  # noqa: E402


def _hf(window=4, layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LongformerConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64,
        attention_window=[window] * layers, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, sep_token_id=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        type_vocab_size=1,
    )  # fmt: skip
    model = transformers.LongformerModel(cfg).eval()
    for p in model.parameters():  # random weights everywhere (HF zeroes biases)
        torch.nn.init.normal_(p, 0.0, 0.2)
    return model


def _inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (2, 23), generator=g)
    mask = torch.ones(2, 23, dtype=torch.long)
    ids[1, 17:], mask[1, 17:] = 1, 0
    glob = torch.zeros(2, 23, dtype=torch.long)
    glob[:, 0] = 1
    glob[0, 9] = 1
    return ids, mask, glob


@pytest.mark.parametrize("window", [4, 6])
@pytest.mark.parametrize("with_global", [False, True])
def test_hidden_states_and_pooler_equal_longformer_model(window, with_global):
    hf = _hf(window)
    ours = convert.bert_from_longformer(hf.state_dict(), hf.config.to_dict())
    ids, mask, glob = _inputs()
    g = glob if with_global else None
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, global_attention_mask=g)
        h = ours.encode(ids, mask, global_attention_mask=g)
    real = mask.bool()
    torch.testing.assert_close(h[real], ref.last_hidden_state[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.pool(h), ref.pooler_output, atol=1e-4, rtol=1e-4)


def test_config_and_weights_round_trip():
    hf = _hf()
    cfg = convert.hf_config_to_genlab(hf.config.to_dict())
    assert cfg.attention == "longformer" and cfg.attention_window == 4 and cfg.global_projections
    state = convert.hf_state_to_genlab(hf.state_dict(), cfg)
    back = convert.genlab_state_to_hf(state, cfg)
    theirs = {k: v for k, v in hf.state_dict().items() if not k.endswith(("position_ids", "token_type_ids"))}
    assert set(back) == set(theirs)
    assert all(torch.equal(back[k], theirs[k]) for k in back)
    hf_cfg = convert.genlab_config_to_hf(cfg)
    rebuilt = transformers.LongformerModel(transformers.LongformerConfig(**hf_cfg))
    result = rebuilt.load_state_dict(back, strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if "position_ids" not in k]


def test_per_layer_windows_are_refused():
    hf = _hf()
    d = hf.config.to_dict() | {"attention_window": [4, 8]}
    with pytest.raises(ConfigError, match="differs per layer"):
        convert.hf_config_to_genlab(d)


def test_global_mask_needs_longformer():
    model = Bert(BertConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8, heads=[]))
    with pytest.raises(ValueError, match="needs attention=longformer"):
        model.encode(torch.zeros(1, 4, dtype=torch.long), global_attention_mask=torch.ones(1, 4))
