"""genlab.runs.load_run: every family back from its run directory; one fallback rule; one set of errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe
from safetensors.torch import load_file

from genlab.core.errors import CheckpointError, ConfigError, RunDirError
from genlab.data import sources
from genlab.models.bert import Bert
from genlab.models.cnn import CNN
from genlab.models.gan import GAN
from genlab.models.gpt import GPT
from genlab.models.vae import VAE
from genlab.recipes import load_recipe, run_task
from genlab.runs import LoadedRun, checkpoint_path, load_run
from genlab.tokenizers import CharTokenizer, WordPieceTokenizer

QUICK = {"progress": False, "tensorboard": False, "log_interval": 1}
TINY_BERT = {"preset": "bert-micro", "block_size": 32}
GENERATOR = {"preset": "bert-micro", "block_size": 32, "n_layer": 1, "n_embd": 16, "n_head": 2,
             "embedding_size": 32, "pooler": False}  # fmt: skip
TOPICS = {"min_entries": 10, "vocab_size": 300, "max_length": 32}
BERT_TRAIN = {"max_steps": 4, "batch_size": 8, "lr": 3e-3, "warmup_steps": 1, "eval_interval": 2, "eval_batches": 1,
              **QUICK}  # fmt: skip


def image_recipe(name: str, steps: int = 4, **train) -> dict:
    r = load_recipe(name)
    r["train"].update({"max_steps": steps, "eval_interval": steps // 2, **QUICK, **train})
    if r["task"] in ("vae", "gan"):
        r["grid_size"] = 4
    return r


def stored(run_dir: Path, which: str, name: str = "model") -> dict[str, torch.Tensor]:
    """The tensors of ``name`` in the checkpoint ``which`` points to, read straight from disk."""
    ptr = json.loads((run_dir / "checkpoints" / f"{which}.json").read_text())
    return load_file(str(run_dir / "checkpoints" / ptr["dir"] / f"{name}.safetensors"))


def assert_holds(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert tensors and all(torch.equal(state[k], t) for k, t in tensors.items())


@pytest.fixture(scope="module")
def fortunes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fortunes")
    rng = random.Random(0)
    words = {"art": "paint canvas museum brush color", "food": "bread cheese soup kitchen recipe",
             "science": "atom physics energy theory experiment"}  # fmt: skip
    for topic, vocab in words.items():
        entries = [" ".join(rng.choices(vocab.split(), k=5) + rng.choices(["the", "a", "of"], k=3)) for _ in range(40)]
        (folder / topic).write_text("\n%\n".join(entries) + "\n%\n", encoding="utf-8")
    return folder


@pytest.fixture
def use_fortunes(fortunes, monkeypatch):
    monkeypatch.setattr(sources, "FORTUNES_DIR", fortunes)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("lm") / "run"
    text = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
    run_task(tiny_recipe(text, max_steps=6, eval_interval=3), run_dir=run)
    return run


def test_lm_best_last_and_the_named_tuple(lm_run):
    run = load_run(lm_run)
    assert isinstance(run, LoadedRun) and isinstance(run.model, GPT) and not run.model.training
    model, tok, config = run  # unpacks like a tuple
    assert isinstance(tok, CharTokenizer) and tok.vocab_size == model.config.vocab_size
    assert config["task"] == "lm" and config["model"]["family"] == "gpt"
    assert_holds(model, stored(lm_run, "best"))
    assert_holds(load_run(lm_run, "last").model, stored(lm_run, "last"))


def test_best_falls_back_to_last_only_while_there_is_no_best(lm_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(lm_run, run)
    (run / "checkpoints" / "best.json").unlink()  # as before the first evaluation
    assert checkpoint_path(run, "best") == checkpoint_path(run, "last")
    assert_holds(load_run(run, "best").model, stored(run, "last"))
    (run / "checkpoints" / "last.json").unlink()
    with pytest.raises(CheckpointError, match=f"{run} holds no checkpoint yet"):
        load_run(run, "last")  # last never falls back
    with pytest.raises(CheckpointError, match="holds no checkpoint yet"):
        load_run(run, "best")


def test_one_set_of_errors(lm_run, tmp_path):
    with pytest.raises(RunDirError, match="is not a genlab run directory .no config.yaml."):
        load_run(tmp_path)
    with pytest.raises(ConfigError, match="checkpoint must be 'best' or 'last', got 'newest'"):
        load_run(lm_run, "newest")
    with pytest.raises(ConfigError, match="part='generator' needs an ELECTRA or CodeBERT pretraining run"):
        load_run(lm_run, part="generator")
    broken = tmp_path / "no-model"
    broken.mkdir()
    (broken / "config.yaml").write_text("task: lm\n", encoding="utf-8")
    with pytest.raises(RunDirError, match="has no model section"):
        load_run(broken)


def test_image_runs_classifier_and_vae(tmp_path):
    run_task(image_recipe("cnn/digits", 4), run_dir=tmp_path / "cnn")
    model, tok, config = load_run(tmp_path / "cnn")
    assert isinstance(model, CNN) and tok is None and config["task"] == "classify" and not model.training
    assert_holds(model, stored(tmp_path / "cnn", "best"))
    run_task(image_recipe("vae/digits", 4), run_dir=tmp_path / "vae")
    vae = load_run(tmp_path / "vae", "last").model
    assert isinstance(vae, VAE) and vae.sample(2).shape == (2, 1, 8, 8)
    assert_holds(vae, stored(tmp_path / "vae", "last"))
    results = json.loads((tmp_path / "vae" / "results.json").read_text())
    assert results["item"] == "img" and results["flops_per_item"] > 0 and 0 < results["mfu"] < 1


def test_gan_parts_and_ema_without_an_evaluation(tmp_path):
    r = image_recipe("gan/digits", 4)
    r["model"]["ema"] = 0.9
    run_task(r, run_dir=tmp_path / "gan")
    assert not (tmp_path / "gan" / "checkpoints" / "best.json").exists()  # no FID classifier: no evaluation
    gan = load_run(tmp_path / "gan").model  # best falls back to last
    assert isinstance(gan, GAN) and int(gan.ema_updates) == 1  # sample() draws from the stored EMA generator
    for part in ("generator", "discriminator", "generator_ema"):
        assert_holds(getattr(gan, part), stored(tmp_path / "gan", "last", part))


def test_electra_pretraining_discriminator_and_generator(use_fortunes, tmp_path):
    recipe = {"task": "encoder-pretrain", "objective": "electra", "model": TINY_BERT, "generator": GENERATOR,
              "data": {"corpus": "fortunes", "vocab_size": 300, "val_size": 10, "topics": TOPICS},
              "train": BERT_TRAIN}  # fmt: skip
    run_task(recipe, run_dir=tmp_path / "pre")
    disc, tok, config = load_run(tmp_path / "pre")
    assert isinstance(disc, Bert) and disc.config.heads == ["rtd"] and isinstance(tok, WordPieceTokenizer)
    assert_holds(disc, stored(tmp_path / "pre", "best"))
    gen = load_run(tmp_path / "pre", part="generator").model
    assert gen.config.heads == ["mlm"] and not gen.training
    assert_holds(gen, stored(tmp_path / "pre", "best", "generator"))
    assert torch.equal(gen.tok_emb.weight, disc.tok_emb.weight)  # the shared embeddings


def test_encoder_finetuning_tasks(use_fortunes, tmp_path):
    cls = {"task": "encoder-classify", "model": TINY_BERT, "data": TOPICS, "train": BERT_TRAIN}
    run_task(cls, run_dir=tmp_path / "cls")
    model, tok, config = load_run(tmp_path / "cls")
    assert model.config.heads == ["sequence"] and model.config.num_labels == 3 and config["init"] == "scratch"
    assert_holds(model, stored(tmp_path / "cls", "best"))
    distill = {"task": "encoder-distill", "teacher": str(tmp_path / "cls"), "train": BERT_TRAIN,
               "speed": {"batch_size": 16, "repeats": 1}}  # fmt: skip
    run_task(distill, run_dir=tmp_path / "student")
    student = load_run(tmp_path / "student", "last").model
    assert student.config.n_layer == 1 and config["data"]["min_entries"] == 10
    assert_holds(student, stored(tmp_path / "student", "last"))
