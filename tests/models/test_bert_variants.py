"""The BERT variants as data: SOP, RTD and SBO heads, the RoBERTa/ELECTRA/DistilBERT classifiers,
RoBERTa positions, ELECTRA's shared embeddings, and the variant presets against transformers."""

import dataclasses
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from genlab import cli
from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.models.bert import CLASSIFIERS, Bert, BertConfig, electra_pair, span_boundary_states
from genlab.objectives.electra import electra_loss, electra_step, replaced_token_detection
from genlab.objectives.masked_lm import gather_span_boundaries, mask_tokens, masked_lm_loss, span_mask

os.environ["HF_HUB_OFFLINE"] = "1"
VARIANT_PRESETS = [
    "albert-base",
    "electra-small",
    "electra-small-generator",
    "bert-mini",
    "electra-mini",
    "electra-mini-generator",
    "albert-mini",
]


def micro(**changes) -> BertConfig:
    return dataclasses.replace(preset("bert-micro"), **changes)


def padded(cfg: BertConfig, lengths=(10, 6, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(5, cfg.vocab_size, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids[mask == 0] = cfg.pad_token_id or 0
    return ids, mask


# --- heads ---------------------------------------------------------------------------------


def test_sop_and_rtd_heads_compute_their_formulas():
    model = Bert(micro(heads=["sop", "rtd"], mlp="gelu_tanh")).eval()
    ids, mask = padded(model.config)
    out = model(ids, mask)
    torch.testing.assert_close(out.sop_logits, model.sop(torch.tanh(model.pooler(out.hidden[:, 0]))))
    rtd = model.rtd.out(F.gelu(model.rtd.dense(out.hidden), approximate="tanh")).squeeze(-1)  # act = mlp
    torch.testing.assert_close(out.rtd_logits, rtd)
    assert out.rtd_logits.shape == ids.shape and out.sop_logits.shape == (3, 2)
    assert out.mlm_logits is None and out.nsp_logits is None
    with pytest.raises(ConfigError, match="set pooler=true"):
        from genlab.core.config import from_dict

        from_dict(BertConfig, {"heads": ["sop"], "pooler": False})


@pytest.mark.parametrize("classifier", list(CLASSIFIERS))
def test_sequence_classifiers(classifier):
    """pooler: W dropout(pooled); the others: W_o act(W_d h[CLS]), no pooler needed."""
    cfg = micro(heads=["sequence"], num_labels=3, classifier=classifier, pooler=classifier == "pooler")
    model = Bert(cfg).eval()
    ids, mask = padded(cfg)
    out = model(ids, mask)
    h0 = out.hidden[:, 0]
    if classifier == "pooler":
        assert model.classifier_dense is None
        want = model.classifier(torch.tanh(model.pooler(h0)))
    else:
        assert model.pooler is None and out.pooled is None
        want = model.classifier(CLASSIFIERS[classifier](model.classifier_dense(h0)))
    torch.testing.assert_close(out.logits, want)
    assert out.logits.shape == (3, 3)


def test_span_boundary_head_reads_span_mask_boundaries():
    cfg = micro(heads=["mlm", "sbo"], vocab_size=128, block_size=64, embedding_size=16)
    model = Bert(cfg).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 128, (3, 40), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    inputs, labels, boundaries = span_mask(ids, mask_id=4, vocab_size=128, special_ids=[0, 1, 2, 3, 4], generator=g)
    h = model.encode(inputs)
    # The gather inside models/ is the objective's (models cannot import objectives).
    for ours, theirs in zip(span_boundary_states(h, boundaries), gather_span_boundaries(h, boundaries)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    logits = model.span_boundary_logits(h, boundaries)
    n = int((labels != -100).sum())
    assert logits.shape == (n, 128) and n == int((boundaries[..., 2] >= 0).sum())
    # By hand: [h_{s-1}; h_{e+1}; P_{i-s}] -> two GELU + LayerNorm layers -> the tied decoder.
    left, right, offset = gather_span_boundaries(h, boundaries)
    sbo = model.sbo
    z = sbo.norm1(F.gelu(sbo.fc1(torch.cat([left, right, sbo.pos(offset)], -1))))
    y = sbo.norm2(F.gelu(sbo.fc2(z)))
    torch.testing.assert_close(logits, y @ model.tok_emb.weight.T + model.mlm.decoder.bias)
    # One forward gives MLM and SBO logits; the SBO loss trains the head and the shared embedding.
    out = model(inputs, span_boundaries=boundaries)
    torch.testing.assert_close(out.sbo_logits, logits)
    loss, _ = masked_lm_loss(out.sbo_logits, labels[labels != -100])
    loss.backward()
    assert all(p.grad is not None for p in model.sbo.parameters()) and model.tok_emb.weight.grad is not None
    assert model(inputs).sbo_logits is None  # no boundaries, no SBO
    with pytest.raises(ValueError, match="sbo_max_span"):
        model.span_boundary_logits(h, torch.tensor([[[0, 12, 10]] + [[-1, -1, -1]] * 39] * 3))
    with pytest.raises(ValueError, match="add 'mlm'"):
        micro(heads=["sbo"])
    with pytest.raises(ValueError, match="no span boundary head"):
        Bert(micro()).span_boundary_logits(h, boundaries)


# --- RoBERTa positions ---------------------------------------------------------------------


def test_positions_from_mask_make_left_padding_harmless():
    cfg = micro(
        position_offset=2, pad_token_id=1, type_vocab_size=1, positions_from_mask=True, pooler=False, heads=["mlm"]
    )
    model = Bert(cfg).eval()
    index = Bert(dataclasses.replace(cfg, positions_from_mask=False)).eval()
    index.load_state_dict(model.state_dict())
    right_ids, right_mask = padded(cfg)
    shifts = (right_mask.size(1) - right_mask.sum(1)).tolist()  # the same rows, padded on the left
    left_ids = torch.stack([row.roll(k) for row, k in zip(right_ids, shifts)])
    left_mask = torch.stack([row.roll(k) for row, k in zip(right_mask, shifts)])
    # Right padding: counting real tokens is counting indices.
    real = right_mask.bool()
    torch.testing.assert_close(
        model(right_ids, right_mask).mlm_logits[real], index(right_ids, right_mask).mlm_logits[real]
    )
    # Left padding: each row equals the row alone, and the right-padded batch, at its real tokens.
    out = model(left_ids, left_mask).mlm_logits
    ref = model(right_ids, right_mask).mlm_logits
    for row in range(3):
        torch.testing.assert_close(out[row, left_mask[row].bool()], ref[row, right_mask[row].bool()])
    moved = index(left_ids, left_mask).mlm_logits
    assert not torch.allclose(
        moved[2, left_mask[2].bool()], out[2, left_mask[2].bool()], atol=1e-3
    )  # index positions move


# --- ELECTRA -------------------------------------------------------------------------------


def electra_configs():
    disc = micro(embedding_size=32, pooler=False, heads=["rtd"], classifier="electra", dropout=0.0,
                 attention_dropout=0.0)  # fmt: skip
    gen = dataclasses.replace(disc, n_embd=16, n_head=1, n_inner=64, heads=["mlm"])  # E = 32 projected to 16
    return disc, gen


def test_electra_pair_shares_the_embedding_modules():
    disc_cfg, gen_cfg = electra_configs()
    gen, disc = electra_pair(disc_cfg, gen_cfg)
    for name in ("tok_emb", "pos_emb", "type_emb", "emb_norm"):
        assert getattr(gen, name) is getattr(disc, name), name
    assert gen.tok_emb.weight.data_ptr() == disc.tok_emb.weight.data_ptr()
    assert gen.mlm.decoder.weight is disc.tok_emb.weight  # the generator's decoder stays tied
    assert gen.emb_proj.weight.shape == (16, 32) and disc.emb_proj is None
    unique = {id(p): p.numel() for m in (gen, disc) for p in m.parameters()}
    shared = sum(p.numel() for m in (disc.tok_emb, disc.pos_emb, disc.type_emb, disc.emb_norm) for p in m.parameters())
    assert sum(unique.values()) == gen.num_params() + disc.num_params() - shared
    with torch.no_grad():
        disc.tok_emb.weight[7].fill_(0.5)  # one storage: the generator sees the change
    assert torch.equal(gen.tok_emb.weight[7], torch.full((32,), 0.5))


def test_electra_gradients_from_both_losses_accumulate_in_the_shared_embeddings():
    disc_cfg, gen_cfg = electra_configs()
    torch.manual_seed(0)
    gen, disc = electra_pair(disc_cfg, gen_cfg)
    ids, mask = padded(disc_cfg)
    inputs, labels = mask_tokens(ids, mask_id=4, vocab_size=128, special_ids=[0, 1, 2, 3, 4], attention_mask=mask,
                                 generator=torch.Generator().manual_seed(1))  # fmt: skip
    loss, metrics = electra_step(
        lambda x, m: gen(x, m).mlm_logits,
        lambda x, m: disc(x, m).rtd_logits,
        inputs, labels, ids, mask, disc_weight=50.0, generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    loss.backward()
    assert all(p.grad is not None for m in (gen, disc) for p in m.parameters())
    both = disc.tok_emb.weight.grad.clone()
    # The same step, one loss at a time (the same samples: the same sampling seed).
    disc_in, targets = replaced_token_detection(
        gen(inputs, mask).mlm_logits, inputs, labels, ids, torch.Generator().manual_seed(2)
    )
    real = mask.bool()
    parts = []
    for part in (
        lambda: masked_lm_loss(gen(inputs, mask).mlm_logits, labels)[0],
        lambda: 50.0 * F.binary_cross_entropy_with_logits(disc(disc_in, mask).rtd_logits[real], targets[real]),
    ):
        gen.zero_grad(), disc.zero_grad()
        part().backward()
        parts.append(disc.tok_emb.weight.grad.clone())
    assert parts[0].abs().sum() > 0 and parts[1].abs().sum() > 0
    torch.testing.assert_close(both, parts[0] + parts[1], atol=1e-6, rtol=1e-5)
    assert metrics["disc_loss"] == pytest.approx(F.binary_cross_entropy_with_logits(
        disc(disc_in, mask).rtd_logits[real], targets[real]).item(), rel=1e-5)  # fmt: skip


def test_the_discriminator_learns_replacements_it_can_see():
    """Tokens 5..29 of text, replacements from 30..49: detectable from the token alone, so the
    discriminator must get every position right within 80 steps (the whole path: the
    embeddings, the encoder, the rtd head and the loss)."""
    disc_cfg, _ = electra_configs()
    torch.manual_seed(0)
    disc = Bert(dataclasses.replace(disc_cfg, vocab_size=50))
    opt = torch.optim.AdamW(disc.parameters(), lr=1e-3)
    for _ in range(80):
        ids = torch.randint(5, 30, (16, 24))
        replaced = torch.rand(16, 24) < 0.15
        inputs = torch.where(replaced, torch.randint(30, 50, (16, 24)), ids)
        mask = torch.ones_like(inputs)
        no_mlm = (torch.zeros(0, 50), torch.zeros(0, dtype=torch.long))  # the discriminator's loss alone
        loss, metrics = electra_loss(*no_mlm, disc(inputs, mask).rtd_logits, replaced.float(), mask, disc_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metrics["disc_accuracy"] == 1.0 and metrics["disc_loss"] < 0.1  # from ln 2 = 0.69


def test_electra_mini_pair_has_the_papers_shape():
    """Clark et al. 2020 (Table 6; the official configure_pretraining.py): the generator scales the
    discriminator's width, heads and MLP by one factor (1/4 for Small; 1/4 to 1/2 work best, Fig. 3),
    keeps its depth, shares its E; dropout and attention dropout 0.1; post-LN layers, so every state
    the discriminator hands its head is a LayerNorm output (mean 0, variance 1 at initialisation)."""
    d, g = preset("electra-mini"), preset("electra-mini-generator")
    ratio = g.n_embd / d.n_embd
    assert 1 / 4 <= ratio <= 1 / 2
    assert g.n_head / d.n_head == ratio and g.hidden / d.hidden == ratio
    assert g.n_layer == d.n_layer and g.emb_dim == d.emb_dim == d.n_embd
    assert d.dropout == g.dropout == d.attention_dropout == g.attention_dropout == 0.1
    disc = Bert(dataclasses.replace(d, n_layer=2)).eval()
    h = disc(torch.randint(5, d.vocab_size, (2, 16))).hidden  # (B, T, C)
    torch.testing.assert_close(h.mean(-1), torch.zeros(2, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3, rtol=0)


def test_disc_weight_is_not_a_learning_rate():
    """lambda = 50 against Adam: Adam's first step is invariant to the scale of a parameter's
    gradient, so lambda moves neither the discriminator's own weights nor the generator's any
    differently; what it sets is the balance of the two losses where they meet, in the shared
    embeddings (without gradient clipping; the recipes clip at norm 1, which scales every gradient alike)."""
    disc_cfg, gen_cfg = electra_configs()
    ids, mask = padded(disc_cfg)
    inputs, labels = mask_tokens(ids, mask_id=4, vocab_size=128, special_ids=[0, 1, 2, 3, 4], attention_mask=mask,
                                 generator=torch.Generator().manual_seed(1))  # fmt: skip
    steps = {}
    for weight in (1.0, 50.0):
        torch.manual_seed(0)
        gen, disc = electra_pair(disc_cfg, gen_cfg)
        models = torch.nn.ModuleDict({"gen": gen, "disc": disc})
        before = {k: v.clone() for k, v in models.state_dict().items()}
        opt = torch.optim.AdamW(models.parameters(), lr=1e-3, weight_decay=0.0, eps=1e-16)
        loss, _ = electra_step(
            lambda x, m, g=gen: g(x, m).mlm_logits, lambda x, m, d=disc: d(x, m).rtd_logits, inputs, labels, ids, mask,
            disc_weight=weight, generator=torch.Generator().manual_seed(2),
        )  # fmt: skip
        loss.backward()
        opt.step()
        steps[weight] = {k: v - before[k] for k, v in models.state_dict().items()}
    one, fifty = steps[1.0], steps[50.0]
    # (The attention's qkv bias is left out: its key third has no gradient in exact arithmetic, a
    # softmax being shift-invariant, only rounding noise whose sign Adam's first step follows.)
    own = [k for k in one if (".blocks." in k or ".rtd." in k or ".mlm.dense" in k) and "qkv.bias" not in k]
    assert own and all(torch.allclose(one[k], fifty[k], atol=1e-7) for k in own)
    assert not torch.allclose(one["disc.tok_emb.weight"], fifty["disc.tok_emb.weight"], atol=1e-7)


def test_electra_pair_refuses_configs_that_cannot_share():
    disc, gen = electra_configs()
    with pytest.raises(ConfigError, match="embedding size E: 16 vs 32"):
        electra_pair(disc, dataclasses.replace(gen, embedding_size=0))
    with pytest.raises(ConfigError, match="vocab_size"):
        electra_pair(disc, dataclasses.replace(gen, vocab_size=64))
    with pytest.raises(ConfigError, match="needs the 'mlm' head"):
        electra_pair(disc, dataclasses.replace(gen, heads=["rtd"]))
    with pytest.raises(ConfigError, match="needs the 'rtd' head"):
        electra_pair(gen, gen)
    with torch.device("meta"):
        g, d = electra_pair(preset("electra-mini"), preset("electra-mini-generator"))
        assert sum({id(p): p.numel() for m in (g, d) for p in m.parameters()}.values()) == 6_223_745
        g, d = electra_pair(preset("electra-small"), preset("electra-small-generator"))
        assert sum({id(p): p.numel() for m in (g, d) for p in m.parameters()}.values()) == 23_122_875


# --- presets -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANT_PRESETS)
def test_variant_presets_match_transformers_parameter_counts(name):
    """Each preset exported as its family's config builds a transformers model of the same size."""
    transformers = pytest.importorskip("transformers")
    from genlab.models.convert import bert as convert

    cfg = preset(name)
    hf = convert.genlab_config_to_hf(cfg)
    arch = hf["architectures"][0]
    family = {"albert-base": "albert", "bert-mini": "bert", "albert-mini": "albert"}.get(name, "electra")
    assert hf["model_type"] == family
    hf_cfg = transformers.AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    with torch.device("meta"):
        theirs = sum(p.numel() for p in getattr(transformers, arch)(hf_cfg).parameters())
        ours = Bert(dataclasses.replace(cfg, pooler=cfg.pooler and arch not in convert.NO_POOLER)).num_params()
    assert ours == theirs


def test_genlab_params_shows_the_variant_presets(capsys):
    for name, total in [("albert-base", "11,813,810"), ("electra-small", "13,549,057"), ("electra-mini", "5,356,033")]:
        old, sys.argv = sys.argv, ["genlab", "params", name]
        try:
            cli.main()
        except SystemExit as e:
            assert not e.code
        finally:
            sys.argv = old
        out = capsys.readouterr().out
        assert f"{name}: {total} parameters" in out, out
