"""Mixture of experts in BERT (``model.moe.*``): the dense limit, the aux loss, an MLM run, bad input."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch

from genlab.core.config import parse_overrides
from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.data import sources
from genlab.layers.moe import MoE, MoEConfig
from genlab.models.bert import Bert, BertConfig
from genlab.recipes.encoder_pretrain import pretrain
from genlab.runs import load_run, model_config

#: bert-micro's state-dict keys before BERT had an MoE option (they must not change).
DENSE_KEYS = [
    "tok_emb.weight", "pos_emb.weight", "type_emb.weight", "emb_norm.weight", "emb_norm.bias",
    *[f"blocks.{i}.{k}" for i in range(2) for k in (
        "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "ln1.weight", "ln1.bias",
        "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias", "ln2.weight", "ln2.bias")],
    "pooler.weight", "pooler.bias", "mlm.dense.weight", "mlm.dense.bias", "mlm.norm.weight", "mlm.norm.bias",
    "mlm.decoder.weight", "mlm.decoder.bias", "nsp.weight", "nsp.bias",
]  # fmt: skip


def _overrides(*items: str) -> dict:
    return parse_overrides(list(items))["model"]


def test_dense_bert_keeps_its_keys_and_parameter_count():
    model = Bert(preset("bert-micro"))
    assert list(model.state_dict()) == DENSE_KEYS
    assert model.num_params() == 34050 and model.moe_layers == []
    out = model(torch.randint(0, 128, (2, 8)))
    assert out.aux_loss is None


def test_one_expert_top_1_is_the_dense_bert_with_the_same_weights():
    torch.manual_seed(0)
    dense_cfg = dataclasses.replace(preset("bert-micro"), dropout=0.0, attention_dropout=0.0)
    moe_cfg = dataclasses.replace(dense_cfg, moe=MoEConfig(num_experts=1, top_k=1))
    dense, moe = Bert(dense_cfg), Bert(moe_cfg)
    state = dense.state_dict()
    mapped = {}
    for k, v in state.items():
        if ".mlp." not in k:
            mapped[k] = v
            continue
        head, tail = k.split(".mlp.")
        layer, kind = tail.split(".")  # fc|proj, weight|bias
        name = f"{head}.mlp.experts.{layer}.{kind}"
        mapped[name] = v.t()[None] if kind == "weight" else v[None]  # Linear (out, in) -> (1, in, out)
    mapped.update({k: v for k, v in moe.state_dict().items() if ".router." in k})
    moe.load_state_dict(mapped)
    ids = torch.randint(1, 128, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    dense.train(), moe.train()  # no dropout: train mode runs the same function, with gradients
    a, b = dense(ids, mask), moe(ids, mask)
    torch.testing.assert_close(b.hidden, a.hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.mlm_logits, a.mlm_logits, atol=1e-5, rtol=1e-5)
    a.mlm_logits.square().mean().backward()
    b.mlm_logits.square().mean().backward()
    g_dense = dense.blocks[0].mlp.fc.weight.grad.t()
    g_moe = moe.blocks[0].mlp.experts.fc.weight.grad[0]
    torch.testing.assert_close(g_moe, g_dense, atol=1e-6, rtol=1e-4)
    # The balancing loss of a single expert is its floor, E sum f P = 1, weighted by the coefficient.
    torch.testing.assert_close(b.aux_loss, torch.tensor(2 * 0.01))


def test_aux_loss_is_the_sum_over_layer_applications():
    torch.manual_seed(0)
    cfg = preset("bert-moe-micro")
    model = Bert(cfg)
    assert len(model.moe_layers) == 2 and all(isinstance(b.mlp, MoE) for b in model.blocks)
    assert ".router." in " ".join(model.state_dict())
    out = model(torch.randint(0, 128, (2, 12)))
    torch.testing.assert_close(out.aux_loss, model.moe_layers[0].aux_loss + model.moe_layers[1].aux_loss)
    out.aux_loss.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    # ALBERT-style sharing: one MoE layer applied n_layer times contributes n_layer losses (one
    # expert: each is exactly its coefficient, E sum f P = 1).
    one = MoEConfig(num_experts=1, top_k=1, aux_loss_coef=0.01)
    shared = Bert(dataclasses.replace(cfg, share_layers=True, n_layer=3, moe=one))
    out = shared(torch.randint(0, 128, (2, 12)))
    assert len(shared.moe_layers) == 1
    torch.testing.assert_close(out.aux_loss, torch.tensor(3 * 0.01))


def test_every_other_layer_and_packed_embeddings():
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("bert-moe-micro"), n_layer=4, moe=MoEConfig(num_experts=4, top_k=2, every=2))
    model = Bert(cfg).eval()
    assert [isinstance(b.mlp, MoE) for b in model.blocks] == [False, True, False, True]
    ids = torch.randint(5, 128, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, 4:] = 0
    mask[2, 6:] = 0
    # Evaluation is dropless, so a token's experts do not depend on the padding around it.
    torch.testing.assert_close(model.embed_packed(ids, mask), model.embed(ids, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"preset": "cnn-digits", **_overrides("model.moe.num_experts=4")}, "the cnn family has no mixture-of-experts"),
        ({"family": "seq2seq", **_overrides("model.moe.num_experts=4")}, "families that have one: bert, gpt"),
        ({"preset": "bert-micro", **_overrides("model.moe.num_experts=2", "model.moe.top_k=3")}, "exceeds"),
        ({"preset": "bert-micro", **_overrides("model.moe.router=relu")}, "is not one of"),
    ],
)
def test_bad_moe_options_are_one_line_errors(section, words):
    with pytest.raises(ConfigError) as e:
        model_config(section)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bert_config_takes_moe_as_data():
    cfg = model_config({"preset": "bert-micro", **_overrides("model.moe.num_experts=4", "model.moe.top_k=1")})
    assert isinstance(cfg, BertConfig) and cfg.moe == MoEConfig(num_experts=4, top_k=1)
    assert BertConfig(moe={"num_experts": 2, "top_k": 1}).moe.num_experts == 2


@pytest.fixture
def fortunes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three topics of 30 fortunes each, drawn from topic words plus common words."""
    folder = tmp_path / "fortunes"
    folder.mkdir()
    rng = random.Random(0)
    topics = {"art": "paint canvas museum brush color", "food": "bread cheese soup kitchen recipe",
              "science": "atom physics energy theory quantum"}  # fmt: skip
    for topic, words in topics.items():
        entries = [" ".join(rng.choices(words.split(), k=5) + rng.choices(["the", "a", "of"], k=3)) for _ in range(30)]
        (folder / topic).write_text("\n%\n".join(entries) + "\n%\n", encoding="utf-8")
    monkeypatch.setattr(sources, "FORTUNES_DIR", folder)
    return folder


def test_an_mlm_run_with_four_experts_trains_end_to_end(fortunes, tmp_path):
    recipe = {
        "task": "encoder-pretrain", "objective": "mlm",
        "model": {"preset": "bert-micro", "block_size": 32, "moe": {"num_experts": 4}},
        "data": {"corpus": "fortunes", "vocab_size": 300, "val_size": 10, "topics": {"min_entries": 10}},
        "train": {"max_steps": 16, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "eval_interval": 8,
                  "eval_batches": 2, "log_interval": 1, "progress": False, "tensorboard": False},
    }  # fmt: skip
    trainer = pretrain(recipe, tmp_path / "run")
    rows = [r for r in trainer.history if "train_loss" in r]
    losses = [r["train_loss"] for r in rows]
    assert sum(losses[-3:]) < sum(losses[:3])
    # The balancing loss reached the engine (logged beside the loss, added to what it backpropagated).
    assert all(0 < r["aux_loss"] < 1 for r in rows)  # 2 layers x 0.01 x (about 1 when balanced, 4 at worst)
    assert "val_aux_loss" in trainer.history[-1]
    model, _, config = load_run(tmp_path / "run")
    assert config["model"]["moe"]["num_experts"] == 4 and len(model.moe_layers) == 2
    assert model.moe_layers[0].router.weight.shape == (4, 32)


def test_fine_tuning_losses_pass_an_moe_encoder_s_balancing_loss_to_the_engine():
    from genlab.objectives.classification import sequence_classification_loss
    from genlab.rag.reader import span_extraction_loss

    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(5, 128, (3, 9)), "attention_mask": torch.ones(3, 9, dtype=torch.long),
             "token_type_ids": torch.zeros(3, 9, dtype=torch.long), "labels": torch.tensor([0, 1, 0]),
             "start_positions": torch.tensor([1, 2, 0]), "end_positions": torch.tensor([3, 2, 0])}  # fmt: skip
    for cfg, has_aux in ((preset("bert-moe-micro"), True), (preset("bert-micro"), False)):
        model = Bert(dataclasses.replace(cfg, heads=["sequence", "qa"]))
        for loss_fn in (sequence_classification_loss, span_extraction_loss):
            loss, metrics = loss_fn(model, batch)
            assert ("aux_loss" in metrics) == has_aux
            if has_aux:  # the router's loss, with its gradient: the engine adds it to what it backpropagates
                assert metrics["aux_loss"].requires_grad and float(metrics["aux_loss"].detach()) > 0
