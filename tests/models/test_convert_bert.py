"""BERT interop: genlab <-> Hugging Face transformers on tiny random configs built here.

Every parameter of the Hugging Face models is randomised (LayerNorms and biases too, which
their initialisation leaves at 1 and 0), so a mis-mapped tensor cannot hide. Logits are compared
on a padded batch with two segments, at the real tokens. Nothing touches the hub.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from genlab.core.errors import CheckpointError, ConfigError
from genlab.models.bert import Bert, BertConfig
from genlab.models.convert import bert as convert

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
HF_CONFIG = {
    "vocab_size": 101,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 40,
    "type_vocab_size": 2,
    "attn_implementation": "eager",
}
# Hugging Face class, genlab output field(s) compared, Hugging Face output field(s).
ARCHS = {
    "BertModel": (["hidden", "pooled"], ["last_hidden_state", "pooler_output"]),
    "BertForMaskedLM": (["mlm_logits"], ["logits"]),
    "BertForPreTraining": (["mlm_logits", "nsp_logits"], ["prediction_logits", "seq_relationship_logits"]),
    "BertForNextSentencePrediction": (["nsp_logits"], ["logits"]),
    "BertForSequenceClassification": (["logits"], ["logits"]),
    "BertForTokenClassification": (["token_logits"], ["logits"]),
    "BertForQuestionAnswering": (["start_logits", "end_logits"], ["start_logits", "end_logits"]),
}


def batch(vocab=101, lengths=(12, 7, 3), seed=1):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids[mask == 0] = 0
    types = ((torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None] // 2).long()) * mask
    return ids, mask, types


def randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.dim() == 1 and p.shape[0] == 32 else 0.0))
    return model


def make_hf(path: Path, arch: str, seed=0, **overrides) -> Path:
    num_labels = 2 if arch == "BertForQuestionAnswering" else 3
    cfg = transformers.BertConfig(**{**HF_CONFIG, "num_labels": num_labels, **overrides})
    torch.manual_seed(seed)
    randomise(getattr(transformers, arch)(cfg), seed).save_pretrained(path)
    return path


def at_real(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return t[mask.bool()] if t.dim() >= 2 and t.shape[:2] == mask.shape else t


def compare(genlab_model, hf_model, ours: list[str], theirs: list[str]) -> float:
    ids, mask, types = batch()
    with torch.no_grad():
        a = genlab_model(ids, mask, types)
        b = hf_model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    worst = 0.0
    for x, y in zip(ours, theirs):
        diff = (at_real(getattr(a, x), mask) - at_real(getattr(b, y), mask)).abs().max().item()
        worst = max(worst, diff)
    return worst


@pytest.mark.parametrize("arch", list(ARCHS))
def test_hf_checkpoints_load_with_the_same_logits(arch, tmp_path):
    path = make_hf(tmp_path / arch, arch)
    ours = convert.load_hf_bert(path)
    theirs = getattr(transformers, arch).from_pretrained(path).eval()
    assert sorted(ours.config.heads) == sorted(convert.ARCHITECTURES[arch])
    assert compare(ours, theirs, *ARCHS[arch]) < ATOL
    if ours.mlm is not None:
        assert ours.mlm.decoder.weight is ours.tok_emb.weight


@pytest.mark.parametrize("arch", list(ARCHS))
def test_genlab_exports_load_in_transformers_with_the_same_logits(arch, tmp_path):
    heads = convert.ARCHITECTURES[arch]
    cfg = BertConfig(
        vocab_size=101, block_size=40, n_layer=2, n_head=4, n_embd=32, n_inner=48, heads=heads,
        num_labels=2 if arch == "BertForQuestionAnswering" else 3, pooler=arch not in convert.NO_POOLER,
    )  # fmt: skip
    model = randomise(Bert(cfg), seed=3).eval()
    written = convert.write_hf_bert(model, tmp_path / "hf")
    assert [p.name for p in written] == ["config.json", "model.safetensors"]
    hf_cfg = json.loads(written[0].read_text())
    assert hf_cfg["architectures"] == [arch] and hf_cfg["model_type"] == "bert"
    theirs = transformers.AutoConfig.from_pretrained(tmp_path / "hf")
    loaded, info = getattr(transformers, arch).from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert compare(model, loaded.eval(), *ARCHS[arch]) < ATOL
    assert theirs.num_hidden_layers == 2
    # ... and back: the same tensors.
    again = convert.load_hf_bert(tmp_path / "hf")
    for k, t in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], t, rtol=0, atol=0)


def test_an_export_loads_into_other_bert_classes(tmp_path):
    """A pre-training export serves BertModel (the encoder) and BertForMaskedLM alike."""
    model = randomise(Bert(BertConfig(vocab_size=101, block_size=40, n_layer=2, n_head=4, n_embd=32,
                                      heads=["mlm", "nsp"])), seed=5).eval()  # fmt: skip
    convert.write_hf_bert(model, tmp_path / "hf")
    assert compare(model, transformers.BertModel.from_pretrained(tmp_path / "hf").eval(), ["hidden"],
                   ["last_hidden_state"]) < ATOL  # fmt: skip
    mlm = transformers.BertForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert compare(model, mlm, ["mlm_logits"], ["logits"]) < ATOL


def test_config_maps_onto_the_bert_base_preset():
    from genlab.core.registry import preset

    ours = convert.hf_config_to_genlab({**transformers.BertConfig().to_dict(), "architectures": ["BertForPreTraining"]})
    want = preset("bert-base")
    for f in ("vocab_size", "block_size", "type_vocab_size", "n_layer", "n_head", "n_embd", "n_inner", "mlp"):
        assert getattr(ours, f) == getattr(want, f), f
    assert ours.heads == ["mlm", "nsp"] and ours.pooler and ours.norm_eps == 1e-12
    back = transformers.BertConfig.from_dict(convert.genlab_config_to_hf(want))
    assert (back.hidden_size, back.num_hidden_layers, back.intermediate_size, back.vocab_size) == (768, 12, 3072, 30522)


def test_old_checkpoint_names_are_read(tmp_path):
    """A BertModel file with TensorFlow-era gamma/beta names and a position_ids buffer."""
    path = make_hf(tmp_path / "hf", "BertModel")
    tensors = load_file(str(path / "model.safetensors"))
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): t
               for k, t in tensors.items()}  # fmt: skip
    renamed["embeddings.position_ids"] = torch.arange(40)[None]
    save_file(renamed, str(path / "model.safetensors"))
    ours = convert.load_hf_bert(path)
    assert compare(ours, transformers.BertModel.from_pretrained(tmp_path / "hf").eval(), ["hidden"],
                   ["last_hidden_state"]) < ATOL  # fmt: skip


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "this is a gpt2 checkpoint"),
        ({"model_type": "bert", "architectures": ["BertLMHeadModel"]}, "architecture ['BertLMHeadModel']"),
        ({**HF_CONFIG, "model_type": "bert", "is_decoder": True}, "is_decoder"),
        ({**HF_CONFIG, "model_type": "bert", "position_embedding_type": "relative_key"}, "relative_key"),
        ({**HF_CONFIG, "model_type": "bert", "hidden_act": "silu"}, "hidden_act='silu'"),
        ({**HF_CONFIG, "model_type": "bert", "hidden_size": 30}, "not divisible"),
        ({"model_type": "bert"}, "has no 'hidden_size'"),
    ],
)
def test_configs_genlab_cannot_run_are_refused_in_one_line(cfg, match):
    with pytest.raises(ConfigError) as e:
        convert.hf_config_to_genlab(cfg)
    assert match in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"embedding_size": 16}, "embedding_size=16"),
        ({"share_layers": True}, "share_layers=True"),
        ({"position_offset": 2}, "position_offset=2"),
        ({"type_vocab_size": 0}, "type_vocab_size=0"),
        ({"heads": ["mlm", "qa"]}, "match no single Hugging Face BERT architecture"),
    ],
)
def test_genlab_configs_bert_cannot_express_are_refused(change, match):
    cfg = BertConfig(**{**vars(BertConfig(vocab_size=101, n_layer=1, n_head=2, n_embd=32)), **change})
    with pytest.raises(ConfigError, match=match.replace("[", r"\[")):
        convert.genlab_config_to_hf(cfg)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    path = make_hf(tmp_path / "hf", "BertForMaskedLM")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    with pytest.raises(CheckpointError, match="has shape"):
        convert.load_hf_bert(path)
    (path / "config.json").write_text(json.dumps({**config, "architectures": ["BertForNextSentencePrediction"]}))
    with pytest.raises(CheckpointError, match="do not match config.json: missing"):
        convert.load_hf_bert(path)
