"""BERT: published sizes, eager == SDPA with padding, the heads (every preset round-trips in test_presets.py)."""

import dataclasses

import pytest
import torch

from genlab.core.config import from_dict, to_dict
from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.models.bert import Bert, BertConfig

ALL_HEADS = ["mlm", "nsp", "sequence", "token", "qa", "sop", "rtd"]  # all but sbo, which needs span boundaries
OUTPUTS = ("pooled", "mlm_logits", "nsp_logits", "logits", "token_logits", "start_logits", "end_logits", "sop_logits",
           "rtd_logits")  # fmt: skip


def param_count(cfg: BertConfig) -> int:
    with torch.device("meta"):
        return Bert(cfg).num_params()


def micro(**changes) -> BertConfig:
    return dataclasses.replace(preset("bert-micro"), **changes)


def padded_batch(cfg: BertConfig, lengths=(9, 5, 2), seed=0):
    """Random ids right-padded with the pad id, a 1/0 mask and two segments."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(1, cfg.vocab_size, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids[mask == 0] = cfg.pad_token_id or 0
    types = (torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None] // 2).long() * mask
    types = types.clamp(max=cfg.type_vocab_size - 1) if cfg.type_vocab_size else None
    return ids, mask, types


def test_published_parameter_counts():
    """The encoder with its pooler, as the papers and transformers count them, then with the heads."""
    bare = {"bert-base": 109_482_240, "bert-large": 335_141_888, "minilm-l6": 22_713_216}
    for name, n in bare.items():
        assert param_count(dataclasses.replace(preset(name), heads=[])) == n
    assert param_count(dataclasses.replace(preset("roberta-base"), heads=[], pooler=True)) == 124_645_632
    assert param_count(dataclasses.replace(preset("distilbert-base"), heads=[])) == 66_362_880
    assert param_count(preset("bert-base")) == 110_106_428  # + masked LM transform and bias, + NSP
    assert param_count(preset("roberta-base")) == 124_697_433  # RobertaForMaskedLM
    assert param_count(preset("distilbert-base")) == 66_985_530  # DistilBertForMaskedLM
    assert abs(param_count(preset("bert-large")) - 340e6) / 340e6 < 0.02
    # The variants (each equal to transformers' count of the same config: test_bert_variants.py).
    assert param_count(dataclasses.replace(preset("albert-base"), heads=[])) == 11_683_584  # the paper's "12M"
    assert param_count(preset("albert-base")) == 11_813_810  # AlbertForPreTraining
    assert param_count(dataclasses.replace(preset("electra-small"), heads=[])) == 13_483_008  # the paper's "14M"
    assert param_count(preset("electra-small")) == 13_549_057  # ElectraForPreTraining
    assert param_count(preset("electra-small-generator")) == 13_546_682  # ElectraForMaskedLM
    small = {"bert-mini": 5_430_272, "electra-mini": 5_356_033, "electra-mini-generator": 2_998_656}
    for name, n in {**small, "albert-mini": 1_995_906}.items():
        assert param_count(preset(name)) == n, name


def test_config_round_trips_through_a_dict_and_rejects_bad_values():
    cfg = micro(heads=["mlm", "qa"], embedding_size=16)
    assert from_dict(BertConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown head 'cls'"):
        from_dict(BertConfig, {"heads": ["cls"]})
    with pytest.raises(ConfigError, match="set pooler=true"):
        from_dict(BertConfig, {"heads": ["sequence"], "pooler": False})
    with pytest.raises(ConfigError, match="pad_token_id"):
        from_dict(BertConfig, {"vocab_size": 10, "pad_token_id": 10})
    with pytest.raises(ConfigError, match="mlp="):
        from_dict(BertConfig, {"mlp": "swiglu"})


VARIANTS = [
    {},
    {"heads": ALL_HEADS, "num_labels": 3},
    {"embedding_size": 16, "share_layers": True, "n_layer": 3},  # ALBERT-shaped
    {"type_vocab_size": 0, "pooler": False, "heads": ["mlm"]},  # DistilBERT-shaped
    {"position_offset": 2, "pad_token_id": 1, "type_vocab_size": 1},  # RoBERTa-shaped
    {"mlp": "gelu_tanh", "n_inner": 40},
    {"position_offset": 2, "pad_token_id": 1, "positions_from_mask": True, "heads": ["mlm", "sequence"],
     "classifier": "roberta", "pooler": False},  # RoBERTa as imported
    {"embedding_size": 16, "heads": ["rtd", "sequence", "token"], "classifier": "electra", "pooler": False},
    {"type_vocab_size": 0, "heads": ["mlm", "sequence"], "classifier": "distilbert", "pooler": False},
    {"embedding_size": 16, "share_layers": True, "heads": ["mlm", "sop"], "mlp": "gelu_tanh"},  # ALBERT
]  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_eager_and_sdpa_agree_on_padded_batches(variant):
    cfg = micro(**variant)
    a = Bert(dataclasses.replace(cfg, attention="eager")).eval()
    b = Bert(dataclasses.replace(cfg, attention="sdpa")).eval()
    b.load_state_dict(a.state_dict())
    ids, mask, types = padded_batch(cfg)
    real = mask.bool()
    oa, ob = a(ids, mask, types), b(ids, mask, types)
    torch.testing.assert_close(oa.hidden[real], ob.hidden[real], atol=1e-5, rtol=1e-5)
    for name in OUTPUTS:
        x, y = getattr(oa, name), getattr(ob, name)
        assert (x is None) == (y is None)
        if x is not None:
            x, y = (x[real], y[real]) if x.shape[:2] == real.shape else (x, y)
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.embed(ids, mask, types), b.embed(ids, mask, types), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_padding_changes_nothing_at_real_tokens(attention):
    """Each row of a padded batch equals that sequence encoded alone, whatever the padding holds."""
    cfg = micro(attention=attention, heads=ALL_HEADS)
    model = Bert(cfg).eval()
    ids, mask, types = padded_batch(cfg)
    noisy = ids.clone()
    noisy[mask == 0] = 7  # garbage behind the mask
    out = model(noisy, mask, types)
    for row, n in enumerate(mask.sum(1).tolist()):
        alone = model(ids[row : row + 1, :n], None, types[row : row + 1, :n])
        torch.testing.assert_close(out.hidden[row, :n], alone.hidden[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.mlm_logits[row, :n], alone.mlm_logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.logits[row], alone.logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.start_logits[row, :n], alone.start_logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.sop_logits[row], alone.sop_logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.rtd_logits[row, :n], alone.rtd_logits[0], atol=1e-5, rtol=1e-5)


def test_embed_is_the_normalised_masked_mean():
    cfg = micro()
    model = Bert(cfg).eval()
    ids, mask, types = padded_batch(cfg)
    e = model.embed(ids, mask, types)
    h = model.encode(ids, mask, types)
    m = mask[..., None].float()
    want = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(e, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    # Without a mask every position counts.
    full = torch.randint(1, cfg.vocab_size, (2, 6))
    torch.testing.assert_close(model.embed(full), model.embed(full, torch.ones_like(full)))


def test_heads_shapes_and_selection():
    cfg = micro(heads=ALL_HEADS, num_labels=5)
    model = Bert(cfg).eval()
    ids, mask, types = padded_batch(cfg)
    out = model(ids, mask, types)
    B, T = ids.shape
    assert out.pooled.shape == (B, cfg.n_embd)
    assert out.mlm_logits.shape == (B, T, cfg.vocab_size)
    assert out.nsp_logits.shape == (B, 2)
    assert out.logits.shape == (B, 5)
    assert out.token_logits.shape == (B, T, 5)
    assert out.start_logits.shape == out.end_logits.shape == out.rtd_logits.shape == (B, T)
    assert out.sop_logits.shape == (B, 2) and out.sbo_logits is None
    only = model(ids, mask, types, heads=["nsp"])
    assert only.mlm_logits is None and only.logits is None
    torch.testing.assert_close(only.nsp_logits, out.nsp_logits)
    with pytest.raises(ValueError, match="not part of this model"):
        Bert(micro(heads=["mlm"]))(ids, heads=["qa"])
    with pytest.raises(ValueError, match="exceeds the position table"):
        model(torch.zeros(1, cfg.block_size + 1, dtype=torch.long))


def test_tied_decoder_shared_layers_and_factorised_embeddings():
    m = Bert(micro())
    assert m.mlm.decoder.weight is m.tok_emb.weight
    untied = Bert(micro(tie_embeddings=False))
    assert untied.num_params() == m.num_params() + 128 * 32
    shared = Bert(micro(share_layers=True, n_layer=6))
    assert len(shared.blocks) == 1 and shared.num_params() < m.num_params()
    albert = Bert(micro(embedding_size=8))
    assert albert.tok_emb.weight.shape == (128, 8) and albert.emb_proj.weight.shape == (32, 8)
    assert albert.mlm.decoder.weight is albert.tok_emb.weight  # the head maps back down to E
    assert Bert(micro(type_vocab_size=0)).type_emb is None
    assert torch.count_nonzero(m.tok_emb.weight[0]) == 0  # the padding row starts at zero


def test_dropout_only_in_training():
    cfg = micro(dropout=0.5, attention_dropout=0.5)
    model = Bert(cfg)
    ids, mask, types = padded_batch(cfg)
    model.train()
    assert not torch.equal(model(ids, mask, types).hidden, model(ids, mask, types).hidden)
    model.eval()
    torch.testing.assert_close(model(ids, mask, types).hidden, model(ids, mask, types).hidden, rtol=0, atol=0)
