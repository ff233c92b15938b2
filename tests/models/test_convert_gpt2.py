"""GPT-2 interop: genlab <-> Hugging Face transformers, tested on tiny random and trained models.

Nothing touches the hub: the Hugging Face side is a small random-initialised GPT2LMHeadModel
saved with ``save_pretrained``, and the tokenizer is a 300-token BPE trained here.
"""

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe
from safetensors.torch import load_file, save_file
from test_cli import genlab, one_line_error
from tokenizers import Tokenizer

from genlab.core.config import save_yaml
from genlab.core.errors import CheckpointError, ConfigError, RunDirError, TokenizerError
from genlab.core.registry import preset
from genlab.generation.decode import GenerationConfig, generate
from genlab.models.convert import gpt2
from genlab.models.gpt import GPT, GPTConfig
from genlab.recipes.convert import converted_recipe, genlab_to_hf, hf_to_genlab
from genlab.runs import load_run
from genlab.tokenizers import BPETokenizer, load_tokenizer
from genlab.training.checkpoint import save_checkpoint

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
ATOL = 1e-4


@contextmanager
def hf_log():
    """Collect what transformers logs at WARNING and above (its logger does not propagate)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("transformers")
    handler = Keep(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(FIXTURE.read_text(encoding="utf-8"), vocab_size=300)


def make_hf(path: Path, tok: BPETokenizer, seed: int = 0, **overrides) -> Path:
    """A random-initialised GPT-2 (2 layers, 32 dims) saved with save_pretrained, plus tokenizer.json."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=64,
        vocab_size=tok.vocab_size,
        bos_token_id=tok.eos_id,
        eos_token_id=tok.eos_id,
        initializer_range=0.1,  # peakier logits than 0.02: greedy paths without near-ties
        **overrides,
    )
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save(path)
    return path


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, bpe):
    return make_hf(tmp_path_factory.mktemp("hf") / "gpt2-tiny", bpe)


def hf_model(path: Path):
    model = transformers.GPT2LMHeadModel.from_pretrained(path)
    return model.eval()


def sample_ids(vocab: int, batch: int = 2, t: int = 24) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, t), generator=torch.Generator().manual_seed(1))


def greedy_genlab(model, ids: list[int], eos: int | None, n: int = 20) -> list[int]:
    return generate(model, [ids], GenerationConfig(max_new_tokens=n, temperature=0, eos_id=eos))[0][0].tokens


def greedy_hf(model, ids: list[int], eos: int | None, n: int = 20) -> list[int]:
    out = model.generate(
        torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=n, do_sample=False, pad_token_id=eos, eos_token_id=eos,
    )[0, len(ids) :].tolist()  # fmt: skip
    return out[: out.index(eos)] if eos is not None and eos in out else out  # genlab drops the eos token


def max_logit_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def make_run(path: Path, cfg: GPTConfig, tok) -> Path:
    """A genlab run directory without training: config.yaml, tokenizer.json, one checkpoint."""
    path.mkdir(parents=True)
    tok.save(path)
    save_yaml(converted_recipe(cfg, tok), path / "config.yaml")
    save_checkpoint(path / "checkpoints", 0, {"model": GPT(cfg)}, {}, ("last", "best"))
    return path


# --- configs ---------------------------------------------------------------------------


def test_gpt2_config_maps_onto_the_gpt2_preset():
    ours = gpt2.hf_config_to_genlab(transformers.GPT2Config().to_dict())
    want = preset("gpt2")
    for f in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_ratio", "mlp", "pos", "norm", "bias"):
        assert getattr(ours, f) == getattr(want, f), f
    assert ours.tie_embeddings and ours.norm_eps == 1e-5
    back = transformers.GPT2Config.from_dict(gpt2.genlab_config_to_hf(want))
    assert (back.n_embd, back.n_layer, back.n_head, back.n_positions, back.vocab_size) == (768, 12, 12, 1024, 50257)
    assert back.activation_function == "gelu_new" and back.n_inner is None
    assert back.bos_token_id == back.eos_token_id == 50256 and back.tie_word_embeddings


@pytest.mark.parametrize(
    ("hf", "ours"), [("gelu_new", "gelu_tanh"), ("gelu_pytorch_tanh", "gelu_tanh"), ("gelu", "gelu"), ("relu", "relu")]
)
def test_activations(hf, ours):
    cfg = transformers.GPT2Config(activation_function=hf, n_embd=64, n_head=2).to_dict()
    assert gpt2.hf_config_to_genlab(cfg).mlp == ours


@pytest.mark.parametrize(("n_embd", "n_inner"), [(32, 100), (768, 1000), (48, 48), (32, None)])
def test_n_inner_round_trips(n_embd, n_inner):
    cfg = gpt2.hf_config_to_genlab(transformers.GPT2Config(n_embd=n_embd, n_head=2, n_inner=n_inner).to_dict())
    assert int(cfg.mlp_ratio * cfg.n_embd) == (n_inner or 4 * n_embd)
    assert gpt2.genlab_config_to_hf(cfg)["n_inner"] == n_inner


def test_n_ctx_fallback_and_eos():
    cfg = {"model_type": "gpt2", "n_embd": 32, "n_head": 2, "n_layer": 1, "n_ctx": 48, "vocab_size": 300}
    ours = gpt2.hf_config_to_genlab(cfg)
    assert ours.block_size == 48
    assert gpt2.genlab_config_to_hf(ours)["eos_token_id"] is None  # not GPT-2's vocabulary, no tokenizer eos
    assert gpt2.genlab_config_to_hf(ours, eos_id=7)["bos_token_id"] == 7


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("scale_attn_by_inverse_layer_idx", True),
        ("reorder_and_upcast_attn", True),
        ("scale_attn_weights", False),
        ("add_cross_attention", True),
        ("activation_function", "silu"),
    ],
)
def test_options_genlab_cannot_run_are_refused(key, value):
    cfg = {**transformers.GPT2Config().to_dict(), key: value}
    with pytest.raises(ConfigError, match=key) as e:
        gpt2.hf_config_to_genlab(cfg)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("cfg", "arch"),
    [
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "llama"),
        ({"architectures": ["BertModel"]}, "BertModel"),
        ({"model_type": "gpt2", "architectures": ["GPT2ForSequenceClassification"]}, "GPT2ForSequenceClassification"),
    ],
)
def test_other_architectures_are_named(cfg, arch):
    with pytest.raises(ConfigError, match=f"this is a {arch} checkpoint; genlab converts"):
        gpt2.hf_config_to_genlab(cfg)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pos": "rope"}, "pos='rope'"),
        ({"norm": "rmsnorm"}, "norm='rmsnorm'"),
        ({"mlp": "swiglu"}, "mlp='swiglu'"),
        ({"bias": False}, "bias=False"),
        ({"n_kv_head": 1}, "n_kv_head=1"),
        ({"pos": "alibi"}, "pos='alibi'"),
    ],
)
def test_genlab_configs_gpt2_cannot_express_are_refused(change, field):
    cfg = GPTConfig(**{**vars(preset("gpt-micro")), **change})
    with pytest.raises(ConfigError, match=field) as e:
        gpt2.genlab_config_to_hf(cfg)
    assert "GPT-2, which needs" in str(e.value) and "\n" not in str(e.value)


# --- Hugging Face -> genlab ------------------------------------------------------------


def test_hf_to_genlab_same_logits_and_greedy_text(hf_dir, bpe, tmp_path):
    result = hf_to_genlab(hf_dir, tmp_path / "run")
    assert result.n_params == sum(p.numel() for p in hf_model(hf_dir).parameters())
    model, tok, recipe = load_run(tmp_path / "run")
    assert tok.fingerprint() == bpe.fingerprint() and recipe["model"]["family"] == "gpt"
    assert "preset" not in recipe["model"] and recipe["data"]["tokenizer"] == "bpe"
    ref = hf_model(hf_dir)
    ids = sample_ids(bpe.vocab_size)
    with torch.no_grad():
        diff = max_logit_diff(model(ids), ref(ids).logits)
    print(f"hf->genlab max |logit diff| = {diff:.3g}")
    assert diff < ATOL
    prompt = bpe.encode("ROMEO: But soft")
    ours = greedy_genlab(model, prompt, bpe.eos_id)
    assert len(ours) > 0 and ours == greedy_hf(ref, prompt, bpe.eos_id)


def test_gpt2model_checkpoint_as_pytorch_bin(hf_dir, bpe, tmp_path):
    """No ``transformer.`` prefix, causal-mask buffers present, a pickle instead of safetensors."""
    src = tmp_path / "base"
    src.mkdir()
    cfg = json.loads((hf_dir / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPT2Model"]}))
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(hf_dir / "model.safetensors").items()}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(tensors, src / "pytorch_model.bin")
    bpe.save(src)
    hf_to_genlab(src, tmp_path / "run")
    model, _, _ = load_run(tmp_path / "run")
    ids = sample_ids(bpe.vocab_size)
    with torch.no_grad():
        assert max_logit_diff(model(ids), hf_model(hf_dir)(ids).logits) < ATOL


def test_tokenizer_from_vocab_and_merges(hf_dir, bpe, tmp_path):
    src = tmp_path / "slow-tokenizer"
    src.mkdir()
    for name in ("config.json", "model.safetensors"):
        (src / name).write_bytes((hf_dir / name).read_bytes())
    bpe.hf.model.save(str(src))  # vocab.json + merges.txt, as GPT-2's slow tokenizer ships them
    result = hf_to_genlab(src, tmp_path / "run")
    assert "vocab.json + merges.txt" in result.tokenizer
    tok = load_tokenizer(tmp_path / "run")
    text = FIXTURE.read_text(encoding="utf-8")[:3000] + "<|endoftext|>  Zoë's 12 cats\n"
    assert tok.encode(text) == bpe.encode(text)
    assert tok.decode(tok.encode(text)) == text and tok.eos_id == bpe.eos_id


def test_untied_head(bpe, tmp_path):
    src = make_hf(tmp_path / "untied", bpe, seed=3, tie_word_embeddings=False)
    assert "lm_head.weight" in load_file(src / "model.safetensors")
    hf_to_genlab(src, tmp_path / "run")
    model, _, _ = load_run(tmp_path / "run")
    assert not model.config.tie_embeddings
    ids = sample_ids(bpe.vocab_size)
    with torch.no_grad():
        assert max_logit_diff(model(ids), hf_model(src)(ids).logits) < ATOL
    genlab_to_hf(tmp_path / "run", tmp_path / "back")
    back, orig = load_file(tmp_path / "back" / "model.safetensors"), load_file(src / "model.safetensors")
    assert back.keys() == orig.keys()
    assert json.loads((tmp_path / "back" / "config.json").read_text())["tie_word_embeddings"] is False
    with torch.no_grad():
        assert max_logit_diff(model(ids), hf_model(tmp_path / "back")(ids).logits) < ATOL


def test_round_trip_hf_genlab_hf_is_exact(hf_dir, tmp_path):
    hf_to_genlab(hf_dir, tmp_path / "run")
    genlab_to_hf(tmp_path / "run", tmp_path / "back")
    orig, back = load_file(hf_dir / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(back) == sorted(orig)
    for k in orig:
        assert torch.equal(orig[k], back[k]), k
    a, b = (json.loads((d / "config.json").read_text()) for d in (hf_dir, tmp_path / "back"))
    for key in ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size", "activation_function", "n_inner"):
        assert a[key] == b[key], key
    assert (tmp_path / "back" / "tokenizer.json").read_text() == (hf_dir / "tokenizer.json").read_text()


# --- genlab -> Hugging Face ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_bpe_run(tmp_path_factory):
    from genlab.recipes.lm import train

    recipe = tiny_recipe(FIXTURE, max_steps=8, eval_interval=8)
    recipe["model"] = {"preset": "gpt-micro", "mlp": "gelu_tanh"}
    recipe["data"].update(tokenizer="bpe", vocab_size=300)
    run = tmp_path_factory.mktemp("trained") / "run"
    train(recipe, run)
    return run


def test_genlab_to_hf_loads_in_transformers_with_same_logits_and_text(trained_bpe_run, tmp_path):
    out = tmp_path / "hf"
    genlab_to_hf(trained_bpe_run, out)
    assert "lm_head.weight" not in load_file(out / "model.safetensors")  # tied, as save_pretrained writes it
    with hf_log() as logged:
        ref, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    assert not logged, [r.getMessage() for r in logged]
    ref.eval()
    assert ref.lm_head.weight.data_ptr() == ref.transformer.wte.weight.data_ptr()
    model, tok, _ = load_run(trained_bpe_run)
    ids = sample_ids(tok.vocab_size, t=32)
    with torch.no_grad():
        diff = max_logit_diff(model(ids), ref(ids).logits)
    print(f"genlab->hf max |logit diff| = {diff:.3g}")
    assert diff < ATOL
    prompt = tok.encode("ROMEO:")
    ours = greedy_genlab(model, prompt, tok.eos_id)
    assert len(ours) > 0 and ours == greedy_hf(ref, prompt, tok.eos_id)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    assert hf_tok(text)["input_ids"] == tok.encode(text)
    assert hf_tok.decode(prompt + ours) == tok.decode(prompt + ours)
    assert hf_tok.eos_token_id == tok.eos_id == ref.config.eos_token_id


def test_genlab_to_hf_refuses_what_gpt2_cannot_express(bpe, tmp_path):
    cfg = GPTConfig(vocab_size=bpe.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16, pos="rope")
    run = make_run(tmp_path / "rope", cfg, bpe)
    with pytest.raises(ConfigError, match="pos='rope' cannot be written as GPT-2, which needs pos='learned'"):
        genlab_to_hf(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- errors ----------------------------------------------------------------------------


def copy_hf(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        if p.name not in skip:
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_missing_and_broken_weights(hf_dir, tmp_path):
    src = copy_hf(hf_dir, tmp_path / "noweights", skip=("model.safetensors",))
    with pytest.raises(CheckpointError, match="holds no model weights: expected one of model.safetensors"):
        hf_to_genlab(src, tmp_path / "run")
    (src / "model.safetensors").write_bytes((hf_dir / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read"):
        hf_to_genlab(src, tmp_path / "run")
    tensors = load_file(hf_dir / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing \['transformer.h.1.mlp.c_fc.bias'\]"):
        hf_to_genlab(src, tmp_path / "run")
    tensors = load_file(hf_dir / "model.safetensors")
    tensors["transformer.wpe.weight"] = tensors["transformer.wpe.weight"][:32]
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"'transformer.wpe.weight' has shape \(32, 32\)"):
        hf_to_genlab(src, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_missing_tokenizer_and_vocab_mismatch(hf_dir, bpe, tmp_path):
    src = copy_hf(hf_dir, tmp_path / "notok", skip=("tokenizer.json",))
    with pytest.raises(TokenizerError, match=r"missing: tokenizer.json, vocab.json, merges.txt"):
        hf_to_genlab(src, tmp_path / "run")
    bigger = BPETokenizer(Tokenizer.from_str(bpe.hf.to_str()))
    bigger.hf.add_special_tokens(["<pad>"])
    bigger.save(src)
    with pytest.raises(ConfigError, match="the model has 300 tokens but the tokenizer 301"):
        hf_to_genlab(src, tmp_path / "run")


def test_existing_out_dir(hf_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty: add --overwrite"):
        hf_to_genlab(hf_dir, out)
    with pytest.raises(RunDirError, match="refusing to delete it"):
        hf_to_genlab(hf_dir, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    hf_to_genlab(hf_dir, out)  # an empty directory is fine
    hf_to_genlab(hf_dir, out, overwrite=True)  # and a previous conversion may be replaced
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.yaml", "tokenizer.json"]
    with pytest.raises(RunDirError, match="would replace the input"):
        hf_to_genlab(hf_dir, hf_dir, overwrite=True)


# --- the command line ------------------------------------------------------------------


def test_cli_end_to_end(hf_dir, tmp_path, capsys):
    code, out, err = genlab("convert", "--help", capsys=capsys)
    assert code == 0 and "hf-to-genlab" in out and "genlab-to-hf" in out
    for command in ("hf-to-genlab", "genlab-to-hf"):
        code, out, _ = genlab("convert", command, "--help", capsys=capsys)
        assert code == 0 and "--overwrite" in out
    run = tmp_path / "run"
    code, out, err = genlab("convert", "hf-to-genlab", hf_dir, run, capsys=capsys)
    assert code == 0, err
    assert "wrote genlab run" in out and "genlab sample" in out
    prompt = "ROMEO: But soft"
    code, out, err = genlab(
        "sample", run, "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "20", capsys=capsys
    )
    assert code == 0, err
    tok = load_tokenizer(run)
    ref = greedy_hf(hf_model(hf_dir), tok.encode(prompt), tok.eos_id)
    assert out.rstrip("\n") == prompt + tok.decode(ref)
    code, _, err = genlab("convert", "genlab-to-hf", run, tmp_path / "back", capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "back" / "model.safetensors").is_file()
    one_line_error(capsys, "convert", "hf-to-genlab", hf_dir, run, match="add --overwrite")
    code, _, err = genlab("convert", "hf-to-genlab", hf_dir, run, "--overwrite", capsys=capsys)
    assert code == 0, err


def test_cli_char_run_to_hf(tmp_path, capsys):
    """A trained character-level run exports with a WordLevel tokenizer.json transformers can load."""
    recipe = tmp_path / "tiny.yaml"
    r = tiny_recipe(FIXTURE, max_steps=3, eval_interval=3)
    r["model"]["mlp"] = "gelu_tanh"
    save_yaml(r, recipe)
    code, _, err = genlab("train", recipe, "--out", tmp_path / "run", capsys=capsys)
    assert code == 0, err
    code, out, err = genlab("convert", "genlab-to-hf", tmp_path / "run", tmp_path / "hf", capsys=capsys)
    assert code == 0, err
    assert "WordLevel" in out
    model, tok, _ = load_run(tmp_path / "run")
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "MENENIUS:\nWhat work's, my countrymen, in hand?  Where go you"
    ids = tok.encode(text)
    assert hf_tok(text)["input_ids"] == ids and hf_tok.decode(ids) == text
    with torch.no_grad():
        assert max_logit_diff(model(torch.tensor([ids[:32]])), ref(torch.tensor([ids[:32]])).logits) < ATOL


def test_cli_errors_are_one_line(hf_dir, bpe, tmp_path, capsys):
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    one_line_error(capsys, "convert", "hf-to-genlab", llama, tmp_path / "a", match="this is a llama checkpoint")
    src = copy_hf(hf_dir, tmp_path / "noweights", skip=("model.safetensors",))
    one_line_error(capsys, "convert", "hf-to-genlab", src, tmp_path / "a", match="holds no model weights")
    one_line_error(capsys, "convert", "hf-to-genlab", tmp_path / "nowhere", tmp_path / "a", match="not a directory")
    cfg = GPTConfig(vocab_size=bpe.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16, pos="rope")
    run = make_run(tmp_path / "rope", cfg, bpe)
    one_line_error(capsys, "convert", "genlab-to-hf", run, tmp_path / "b", match="pos='rope'")
    cfg = GPTConfig(vocab_size=bpe.vocab_size, block_size=32, n_layer=1, n_head=2, n_kv_head=1, n_embd=16)
    run = make_run(tmp_path / "mqa", cfg, bpe)
    one_line_error(capsys, "convert", "genlab-to-hf", run, tmp_path / "b", match="no grouped-query attention")
    assert not (tmp_path / "b").exists()
    one_line_error(capsys, "convert", "genlab-to-hf", tmp_path / "nowhere", tmp_path / "b", match="no config.yaml")
