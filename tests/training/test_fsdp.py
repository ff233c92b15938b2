"""FSDP2 (train.parallel=fsdp) with 2 CPU processes (gloo) against one process at the same global batch.

Sharding changes where each parameter, gradient and AdamW moment lives, not the arithmetic of a
step (the gradients are reduce-scattered instead of all-reduced: the same mean), so in fp32 the
losses agree to rounding at every step and the final weights to a tolerance. The checkpoint a
sharded run writes is the one-process format: it loads with load_run and samples; a one-process
checkpoint resumes under FSDP and continues exactly as the one-process run does.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe
from test_distributed import LOSS_TOL, STEPS, WEIGHT_TOL, _bf16_gap, _free_port, _initial_weights, _losses, _run, _train

from genlab.core.config import merge
from genlab.recipes import load_recipe
from genlab.runs import load_run
from genlab.tokenizers import WordPieceTokenizer
from genlab.training.engine import TrainConfig

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def _close(w1: dict, w2: dict) -> None:
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=1e-4)


def test_fsdp_two_processes_match_one_at_the_same_global_batch(tiny_text, tmp_path):
    one = tiny_recipe(tiny_text, max_steps=STEPS, batch_size=8, eval_interval=6)
    two = tiny_recipe(tiny_text, max_steps=STEPS, batch_size=4, eval_interval=6, parallel="fsdp", grad_accum=1)
    train1, val1, model1 = _train(tmp_path, "one", one)
    train2, val2, model2 = _train(tmp_path, "fsdp", two, processes=2)
    assert len(train1) == len(train2) == STEPS and train1[-1] < train1[0]
    for a, b in zip(train1 + val1, train2 + val2):
        assert abs(a - b) < 1e-4, (train1, train2)
    _close(model1.state_dict(), model2.state_dict())
    # The sharded run's checkpoint is an ordinary one: same files, same keys, loads in one process.
    ckpt = next((tmp_path / "fsdp" / "checkpoints").glob("step-*"))
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    results = json.loads((tmp_path / "fsdp" / "results.json").read_text())
    assert results["steps"] == STEPS and results["flops_per_item"] > 0  # the end of the run ran on rank 0
    sample = [sys.executable, "-m", "genlab", "sample", str(tmp_path / "fsdp"), "--prompt", "ROMEO:",
              "--max-new-tokens", "20"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(sample, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ROMEO:" in out.stdout


@pytest.mark.slow
def test_fsdp_with_gradient_accumulation_matches_one_process(tiny_text, tmp_path):
    """2 processes x 2 micro-batches of 2 = one process with 8: gradients reduce-scattered once per step."""
    one = tiny_recipe(tiny_text, max_steps=6, batch_size=8, eval_interval=6)
    two = tiny_recipe(tiny_text, max_steps=6, batch_size=2, grad_accum=2, eval_interval=6, parallel="fsdp")
    train1, _, model1 = _train(tmp_path, "one", one)
    train2, _, model2 = _train(tmp_path, "fsdp", two, processes=2)
    for a, b in zip(train1, train2):
        assert abs(a - b) < 1e-4, (train1, train2)
    _close(model1.state_dict(), model2.state_dict())


def _genlab_train(recipe: Path, out: Path, processes: int, *overrides: str) -> None:
    """``genlab train`` in 1 process, or under FSDP in several: the global batch stays 8."""
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={_free_port()}"]
    parallel = "fsdp" if processes > 1 else "auto"
    overrides = (*overrides, f"train.batch_size={8 // processes}", f"train.parallel={parallel}")
    _run([*launch, "-m", "genlab", "train", str(recipe), "--out", str(out), *overrides],
         {**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


@pytest.mark.parametrize(
    "first, then", [(1, 2), pytest.param(2, 1, marks=pytest.mark.slow)], ids=["one-then-fsdp", "fsdp-then-one"]
)
def test_a_checkpoint_resumes_exactly_across_fsdp_and_one_process(first, then, tiny_text, tmp_path):
    """6 steps in one process (or under FSDP with 2), resumed to 12 under FSDP (or in one process):
    the same losses and weights as 12 steps in one process (weights and AdamW state carried over)."""
    full = tiny_recipe(tiny_text, max_steps=12, batch_size=8, eval_interval=6)
    train_full, _, model_full = _train(tmp_path, "full", full)
    (tmp_path / "half.yaml").write_text(yaml.safe_dump(full))
    # The first part runs the 12-step schedule and stops at 6; the resumed run keeps its config.
    _genlab_train(tmp_path / "half.yaml", tmp_path / "half", first, "train.max_steps=6", "train.decay_steps=12")
    _genlab_train(tmp_path / "half.yaml", tmp_path / "half", then, "--resume", "train.max_steps=12")
    train_resumed, _ = _losses(tmp_path / "half")
    assert len(train_resumed) == 12
    for a, b in zip(train_full, train_resumed):
        assert abs(a - b) < 1e-4, (train_full, train_resumed)
    _close(model_full.state_dict(), load_run(tmp_path / "half", "last")[0].state_dict())


TOPICS = {"art": "paint canvas museum brush color sculpture", "food": "bread cheese soup kitchen recipe butter",
          "science": "atom physics energy theory experiment quantum"}  # fmt: skip


def _fortunes(root: Path) -> Path:
    """$GENLAB_DATA with three topics of 40 generated fortunes each (the subprocesses read it)."""
    folder = root / "fortunes"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for topic, words in TOPICS.items():
        entries = [" ".join(rng.choices(words.split(), k=6) + rng.choices(["the", "a", "of"], k=3)) for _ in range(40)]
        (folder / topic).write_text("\n%\n".join(entries) + "\n%\n", encoding="utf-8")
    return root


def _seq2seq(tmp_path: Path, batch: int) -> dict:
    pairs = tmp_path / "pairs.tsv"
    rng = random.Random(0)
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    pairs.write_text("".join(f"{' '.join(rng.choices(words, k=5))}.\t{' '.join(rng.choices(words, k=4))}.\n"
                             for _ in range(200)), encoding="utf-8")  # fmt: skip
    recipe = load_recipe("seq2seq/tiny")
    data = {"tasks": [{"source": str(pairs), "metric": "bleu"}], "vocab_size": 160, "tokenizer_texts": 0}
    return merge(recipe, {"data": data, "train": {"dtype": "fp32", "max_steps": 6, "eval_interval": 3,
                                                  "log_interval": 1, "batch_size": batch}})  # fmt: skip


def _bert(batch: int, tokenizer: Path) -> dict:
    train = {"dtype": "fp32", "max_steps": 6, "batch_size": batch, "lr": 1e-2, "warmup_steps": 2, "eval_interval": 3,
             "eval_batches": 2, "log_interval": 1, "progress": False, "tensorboard": False}  # fmt: skip
    model = {"preset": "bert-micro", "block_size": 32}
    return {"task": "encoder-classify", "init": "scratch", "model": model,
            "data": {"min_entries": 10, "max_length": 32, "tokenizer": str(tokenizer)}, "train": train}  # fmt: skip


@pytest.mark.parametrize("family", ["moe", "seq2seq", "bert"])
def test_fsdp_trains_each_family_as_ddp_does(family, tiny_text, tmp_path, monkeypatch):
    """Mixture of experts (expert weights shard like any other), T5-style encoder-decoder, BERT
    classifier: 2 processes under FSDP give DDP's losses and weights (DDP: the same global batch as
    one process; the seq2seq and classifier data split a global batch another way than one process does)."""
    if family == "moe":
        recipes = [tiny_recipe(tiny_text, max_steps=6, batch_size=4, eval_interval=3, parallel=p) for p in PAIR]
        for r in recipes:
            r["model"] = {"preset": "gpt-moe-micro"}
    elif family == "seq2seq":
        recipes = [merge(_seq2seq(tmp_path, 4), {"train": {"parallel": p}}) for p in PAIR]
    else:
        data = _fortunes(tmp_path / "data")
        monkeypatch.setenv("GENLAB_DATA", str(data))
        # One vocabulary for both runs (WordPiece training is not deterministic from run to run).
        texts = [p.read_text() for p in (data / "fortunes").iterdir()]
        WordPieceTokenizer.train(texts, vocab_size=200).save(tmp_path / "tok")
        recipes = [merge(_bert(4, tmp_path / "tok"), {"train": {"parallel": p}}) for p in PAIR]
    (train_d, val_d, model_d), (train_f, val_f, model_f) = (
        _train(tmp_path, p, r, processes=2) for p, r in zip(PAIR, recipes)
    )
    assert len(train_d) == len(train_f) == 6
    for a, b in zip(train_d + val_d, train_f + val_f):
        assert abs(a - b) < 1e-4, (train_d, train_f)
    _close(model_d.state_dict(), model_f.state_dict())


PAIR = ("ddp", "fsdp")


@pytest.mark.slow  # emulated bf16 on CPUs without it: minutes
def test_fsdp_mixed_precision_stays_within_bf16_tolerance_of_one_process(tiny_text, tmp_path):
    """Under bf16, FSDP's policy gathers bf16 copies of the parameters for compute and reduces
    gradients in fp32; one process runs bf16 autocast over fp32 weights. Both round each matmul to
    bf16, so they agree to bf16's tolerances (those of test_distributed's DDP check)."""
    one = tiny_recipe(tiny_text, dtype="bf16", max_steps=STEPS, batch_size=8, eval_interval=6)
    two = tiny_recipe(tiny_text, dtype="bf16", max_steps=STEPS, batch_size=4, eval_interval=6, parallel="fsdp")
    run1, run2 = _train(tmp_path, "one", one), _train(tmp_path, "fsdp", two, processes=2)
    init = _initial_weights(run1[2], seed=TrainConfig().seed)
    loss_gap, weight_gap = _bf16_gap(run1, run2, init)
    print(f"bf16 1 process vs 2 under FSDP: loss gap {loss_gap:.2e}, weight gap {weight_gap:.3f}")
    assert run1[0][-1] < run1[0][0]
    assert loss_gap < LOSS_TOL and weight_gap < WEIGHT_TOL, (loss_gap, weight_gap, run1[0], run2[0])
