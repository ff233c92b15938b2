"""BERT-family interop (BERT, RoBERTa, ALBERT, ELECTRA, DistilBERT): genlab <-> Hugging Face transformers
on tiny random configs built here.

Every parameter of the Hugging Face models is randomised (LayerNorms and biases too, which
their initialisation leaves at 1 and 0), so a mis-mapped tensor cannot hide. Logits are compared
on a padded batch with two segments, at the real tokens. Nothing touches the hub.
"""

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from genlab.core.errors import CheckpointError, ConfigError, GenlabError
from genlab.models.bert import Bert, BertConfig, electra_pair
from genlab.models.convert import bert as convert

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
BASE = {
    "vocab_size": 101,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 40,
    "attn_implementation": "eager",
}
HF_CONFIG = {**BASE, "type_vocab_size": 2}
# Tiny configs per family: the Hugging Face config class and its arguments. ALBERT shares its
# 3 layers and factorises E = 16 < C = 32; ELECTRA projects E = 16 -> 32; RoBERTa has one segment
# and positions after pad_token_id = 1.
FAMILY_CONFIGS = {
    "bert": ("BertConfig", HF_CONFIG),
    "roberta": ("RobertaConfig", {**BASE, "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0,
                                  "eos_token_id": 2}),
    "albert": ("AlbertConfig", {**HF_CONFIG, "embedding_size": 16, "num_hidden_layers": 3}),
    "electra": ("ElectraConfig", {**HF_CONFIG, "embedding_size": 16}),
    "distilbert": ("DistilBertConfig", {"vocab_size": 101, "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 48,
                                        "max_position_embeddings": 40, "attn_implementation": "eager"}),
}  # fmt: skip
CASES = [(f, a) for f in convert.MODEL_TYPES for a in convert.FAMILIES[f].architectures]
# genlab output field -> Hugging Face output field, by head (the bare models compare hidden states).
OUTPUTS = {
    "mlm": [("mlm_logits", "logits")],
    "nsp": [("nsp_logits", "logits")],
    "sop": [("sop_logits", "sop_logits")],
    "rtd": [("rtd_logits", "logits")],
    "sequence": [("logits", "logits")],
    "token": [("token_logits", "logits")],
    "qa": [("start_logits", "start_logits"), ("end_logits", "end_logits")],
}
MAX_DIFF: dict[str, float] = {}  # (family, direction) -> worst difference seen, printed by -s


def outputs_of(arch: str, heads: list[str], pooler: bool) -> list[tuple[str, str]]:
    if not heads:
        return [("hidden", "last_hidden_state")] + ([("pooled", "pooler_output")] if pooler else [])
    if arch.endswith("ForPreTraining"):
        head = {"nsp": "seq_relationship_logits", "sop": "sop_logits", "rtd": "logits"}
        return [("mlm_logits", "prediction_logits")] * ("mlm" in heads) + [
            (f"{h}_logits", head[h]) for h in heads if h != "mlm"
        ]
    return [pair for h in heads for pair in OUTPUTS[h]]


def batch(vocab=101, lengths=(12, 7, 3), seed=1, pad=0, left=False):
    """Ids from 3 up (no special ids), padded with ``pad`` on the right (or the left), two segments."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), T), generator=g)
    pos, n = torch.arange(T)[None, :], torch.tensor(lengths)[:, None]
    mask = ((pos >= T - n) if left else (pos < n)).long()
    ids[mask == 0] = pad
    types = (pos >= n // 2).long() * mask
    return ids, mask, types


def randomise(model, seed=0):
    """Every parameter random; LayerNorm scales around 1 (both libraries' names)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            centre = 1.0 if re.search(r"(norm|ln\d)\.weight$", name.lower()) else 0.0
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + centre)
    return model


def hf_config(family: str, arch: str, **overrides):
    cls, kwargs = FAMILY_CONFIGS[family]
    num_labels = 2 if arch.endswith(("ForQuestionAnswering", "ForPreTraining")) else 3
    return getattr(transformers, cls)(**{**kwargs, "num_labels": num_labels, **overrides})


def make_hf(path: Path, arch: str, seed=0, family: str = "bert", **overrides) -> Path:
    torch.manual_seed(seed)
    randomise(getattr(transformers, arch)(hf_config(family, arch, **overrides)), seed).save_pretrained(path)
    return path


def at_real(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return t[mask.bool()] if t.dim() >= 2 and t.shape[:2] == mask.shape else t


def compare(genlab_model, hf_model, ours: list[str], theirs: list[str], left: bool = False) -> float:
    """Largest difference of the named outputs at the real tokens of a padded batch."""
    cfg = genlab_model.config
    ids, mask, types = batch(cfg.vocab_size, pad=cfg.pad_token_id or 0, left=left)
    types = types.clamp(max=max(cfg.type_vocab_size - 1, 0))
    kwargs = {"token_type_ids": types} if cfg.type_vocab_size else {}  # DistilBERT takes none
    with torch.no_grad():
        a = genlab_model(ids, mask, types if cfg.type_vocab_size else None)
        b = hf_model(input_ids=ids, attention_mask=mask, **kwargs)
    worst = 0.0
    for x, y in zip(ours, theirs):
        diff = (at_real(getattr(a, x), mask) - at_real(getattr(b, y), mask)).abs().max().item()
        worst = max(worst, diff)
    return worst


def record(family: str, direction: str, diff: float) -> None:
    key = f"{family} {direction}"
    MAX_DIFF[key] = max(MAX_DIFF.get(key, 0.0), diff)


@pytest.fixture(scope="module", autouse=True)
def report_max_differences():
    yield
    for key, diff in sorted(MAX_DIFF.items()):
        print(f"max |genlab - transformers| {key}: {diff:.2e}")


@pytest.mark.parametrize(("family", "arch"), CASES)
def test_hf_checkpoints_load_with_the_same_logits(family, arch, tmp_path):
    path = make_hf(tmp_path / arch, arch, family=family)
    ours = convert.load_hf_bert(path)
    theirs = getattr(transformers, arch).from_pretrained(path).eval()
    assert sorted(ours.config.heads) == sorted(convert.ARCHITECTURES[arch])
    pairs = outputs_of(arch, ours.config.heads, ours.pooler is not None)
    diff = compare(ours, theirs, *map(list, zip(*pairs)))
    record(family, "HF -> genlab", diff)
    assert diff < ATOL
    if ours.mlm is not None:
        assert ours.mlm.decoder.weight is ours.tok_emb.weight


@pytest.mark.parametrize(("family", "arch"), CASES)
def test_genlab_exports_load_in_transformers_with_the_same_logits(family, arch, tmp_path):
    """A genlab Bert with the family's config data, written without naming the family (inferred)."""
    base = convert.hf_config_to_genlab({**hf_config(family, arch).to_dict(), "architectures": [arch]})
    cfg = dataclasses.replace(base, pooler=arch not in convert.NO_POOLER)
    model = randomise(Bert(cfg), seed=3).eval()
    written = convert.write_hf_bert(model, tmp_path / "hf")
    assert [p.name for p in written] == ["config.json", "model.safetensors"]
    hf_cfg = json.loads(written[0].read_text())
    assert hf_cfg["architectures"] == [arch] and hf_cfg["model_type"] == family
    loaded, info = getattr(transformers, arch).from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    pairs = outputs_of(arch, cfg.heads, cfg.pooler)
    diff = compare(model, loaded.eval(), *map(list, zip(*pairs)))
    record(family, "genlab -> HF", diff)
    assert diff < ATOL
    # ... and back: the same tensors.
    again = convert.load_hf_bert(tmp_path / "hf")
    assert again.config == cfg
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
        ({"model_type": "roberta", "architectures": ["BertForMaskedLM"]}, "for model_type 'roberta'"),
        ({**HF_CONFIG, "model_type": "bert", "is_decoder": True}, "is_decoder"),
        ({**HF_CONFIG, "model_type": "bert", "position_embedding_type": "relative_key"}, "relative_key"),
        ({**HF_CONFIG, "model_type": "bert", "hidden_act": "silu"}, "hidden_act='silu'"),
        ({**HF_CONFIG, "model_type": "bert", "hidden_size": 30}, "not divisible"),
        ({"model_type": "bert"}, "has no 'hidden_size'"),
        ({**HF_CONFIG, "model_type": "albert", "embedding_size": 32}, "embedding_size == hidden_size"),
        ({**HF_CONFIG, "model_type": "albert", "embedding_size": 16, "num_hidden_layers": 4,
          "num_hidden_groups": 2}, "num_hidden_groups=2"),
        ({**HF_CONFIG, "model_type": "albert", "embedding_size": 16, "inner_group_num": 2}, "inner_group_num=2"),
        ({**HF_CONFIG, "model_type": "roberta", "pad_token_id": None}, "pad_token_id=None"),
        ({**HF_CONFIG, "model_type": "distilbert", "dim": 32, "n_heads": 4, "n_layers": 1, "hidden_dim": 8,
          "activation": "silu"}, "activation='silu'"),
        ({**HF_CONFIG, "model_type": "albert", "embedding_size": 16, "num_labels": 3,
          "architectures": ["AlbertForPreTraining"]}, "2 classes"),
    ],
)  # fmt: skip
def test_configs_genlab_cannot_run_are_refused_in_one_line(cfg, match):
    with pytest.raises(ConfigError) as e:
        convert.hf_config_to_genlab(cfg)
    assert match in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_of_another_architecture_is_refused_naming_the_supported_types(tmp_path):
    """A real GPT-2 folder: one line, a CheckpointError (and a ConfigError), before any weight is read."""
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    gpt2.save_pretrained(tmp_path / "gpt2")
    for error in (CheckpointError, ConfigError, GenlabError):
        with pytest.raises(error) as e:
            convert.load_hf_bert(tmp_path / "gpt2")
        msg = str(e.value)
        assert "this is a gpt2 checkpoint" in msg and "\n" not in msg
        assert "model_type bert, roberta, albert, electra, distilbert" in msg


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"embedding_size": 16}, "embedding_size=16"),
        ({"share_layers": True}, "share_layers=True"),
        ({"position_offset": 2}, "position_offset=2"),
        ({"positions_from_mask": True}, "positions_from_mask=True"),
        ({"type_vocab_size": 0}, "type_vocab_size=0"),
        ({"heads": ["mlm", "qa"]}, "match no single Hugging Face bert architecture"),
        ({"heads": ["mlm", "sop"], "pooler": True}, "match no single Hugging Face bert architecture"),
        ({"heads": ["sequence"], "classifier": "roberta"}, "classifier='roberta'"),
        ({"mlm_act": "relu"}, "mlm_act='relu'"),
        ({"heads": ["mlm", "sbo"]}, "span boundary"),
    ],
)
def test_genlab_configs_bert_cannot_express_are_refused(change, match):
    cfg = BertConfig(**{**vars(BertConfig(vocab_size=101, n_layer=1, n_head=2, n_embd=32)), **change})
    with pytest.raises(ConfigError, match=match.replace("[", r"\[")):
        convert.genlab_config_to_hf(cfg, model_type="bert")


@pytest.mark.parametrize(
    ("model_type", "change", "match"),
    [
        ("roberta", {"position_offset": 2, "pad_token_id": 1}, "positions_from_mask=False"),
        ("roberta", {"position_offset": 3, "pad_token_id": 1, "positions_from_mask": True}, "position_offset=3"),
        ("roberta", {"position_offset": 2, "pad_token_id": 1, "positions_from_mask": True, "heads": ["mlm"],
                     "mlm_act": "relu"}, "mlm_act='relu'"),
        ("albert", {"share_layers": True}, "embedding_size=0"),
        ("electra", {"pooler": True}, "pooler=True"),
        ("electra", {"pooler": False, "heads": ["sequence"], "classifier": "roberta"}, "classifier='roberta'"),
        ("electra", {"pooler": False, "heads": ["mlm"], "mlp": "relu"}, "mlm_act=''"),
        ("distilbert", {"pooler": False}, "type_vocab_size=2"),
        ("distilbert", {"pooler": False, "type_vocab_size": 0, "norm_eps": 1e-5}, "norm_eps=1e-05"),
        ("gpt2", {}, "model_type='gpt2'"),
    ],
)  # fmt: skip
def test_genlab_configs_a_family_cannot_express_are_refused(model_type, change, match):
    cfg = BertConfig(**{**vars(BertConfig(vocab_size=101, n_layer=1, n_head=2, n_embd=32)), **change})
    with pytest.raises(ConfigError, match=match.replace("[", r"\[")):
        convert.genlab_config_to_hf(cfg, model_type=model_type)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    path = make_hf(tmp_path / "hf", "BertForMaskedLM")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    with pytest.raises(CheckpointError, match="has shape"):
        convert.load_hf_bert(path)
    (path / "config.json").write_text(json.dumps({**config, "architectures": ["BertForNextSentencePrediction"]}))
    with pytest.raises(CheckpointError, match="do not match config.json: missing"):
        convert.load_hf_bert(path)
    (path / "config.json").write_text(
        json.dumps({**config, "model_type": "roberta", "architectures": ["RobertaForMaskedLM"]})
    )
    with pytest.raises(CheckpointError, match="do not match config.json"):
        convert.load_hf_bert(path)  # BERT weights under a RoBERTa config


# --- family details ----------------------------------------------------------------------


def test_roberta_positions_count_real_tokens_so_left_padding_matches_too(tmp_path):
    """transformers numbers RoBERTa positions over the non-padding ids; genlab over the mask."""
    path = make_hf(tmp_path / "hf", "RobertaForMaskedLM", family="roberta")
    ours = convert.load_hf_bert(path)
    assert (ours.config.position_offset, ours.config.block_size, ours.config.positions_from_mask) == (2, 38, True)
    theirs = transformers.RobertaForMaskedLM.from_pretrained(path).eval()
    for left in (False, True):
        diff = compare(ours, theirs, ["mlm_logits"], ["logits"], left=left)
        record("roberta", "HF -> genlab, left padding" if left else "HF -> genlab", diff)
        assert diff < ATOL
    # Each left-padded row equals the row alone: padding moves no position.
    ids, mask, _ = batch(101, pad=1, left=True)
    with torch.no_grad():
        out = ours(ids, mask).mlm_logits
        for row in range(ids.size(0)):
            alone = ours(ids[row : row + 1, mask[row].bool()]).mlm_logits[0]
            torch.testing.assert_close(out[row, mask[row].bool()], alone, atol=1e-5, rtol=1e-5)


def test_albert_without_sharing_and_electra_without_projection(tmp_path):
    """num_hidden_groups = num_hidden_layers (one group per layer) and ELECTRA with E = C."""
    path = make_hf(tmp_path / "albert", "AlbertForMaskedLM", family="albert", num_hidden_groups=3)
    ours = convert.load_hf_bert(path)
    assert not ours.config.share_layers and len(ours.blocks) == 3
    assert compare(ours, transformers.AlbertForMaskedLM.from_pretrained(path).eval(), ["mlm_logits"], ["logits"]) < ATOL
    convert.write_hf_bert(ours, tmp_path / "albert-out")
    assert json.loads((tmp_path / "albert-out" / "config.json").read_text())["num_hidden_groups"] == 3
    path = make_hf(tmp_path / "electra", "ElectraForPreTraining", family="electra", embedding_size=32)
    ours = convert.load_hf_bert(path)
    assert ours.emb_proj is None and ours.config.embedding_size == 0
    theirs = transformers.ElectraForPreTraining.from_pretrained(path).eval()
    assert compare(ours, theirs, ["rtd_logits"], ["logits"]) < ATOL


def test_an_electra_pair_exports_as_generator_and_discriminator(tmp_path):
    """electra_pair's two models load as ElectraForMaskedLM / ElectraForPreTraining with one embedding."""
    disc_cfg = BertConfig(
        vocab_size=101,
        block_size=40,
        n_layer=2,
        n_head=4,
        n_embd=32,
        embedding_size=16,
        pooler=False,
        heads=["rtd"],
        classifier="electra",
        mlm_act="gelu",
    )
    gen_cfg = dataclasses.replace(disc_cfg, n_embd=16, n_head=2, n_inner=32, heads=["mlm"])  # fmt: skip
    gen, disc = electra_pair(disc_cfg, gen_cfg)
    randomise(disc, seed=7), randomise(gen, seed=8)
    gen.eval(), disc.eval()
    convert.write_hf_bert(gen, tmp_path / "gen")
    convert.write_hf_bert(disc, tmp_path / "disc")
    g = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "gen").eval()
    d = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "disc").eval()
    assert compare(gen, g, ["mlm_logits"], ["logits"]) < ATOL
    assert compare(disc, d, ["rtd_logits"], ["logits"]) < ATOL
    torch.testing.assert_close(g.electra.embeddings.word_embeddings.weight, d.electra.embeddings.word_embeddings.weight)


def test_distilbert_sinusoidal_checkpoints_load(tmp_path):
    """sinusoidal_pos_embds=True stores its fixed table like a learned one."""
    path = make_hf(tmp_path / "hf", "DistilBertModel", family="distilbert", sinusoidal_pos_embds=True)
    ours = convert.load_hf_bert(path)
    theirs = transformers.DistilBertModel.from_pretrained(path).eval()
    assert compare(ours, theirs, ["hidden"], ["last_hidden_state"]) < ATOL
