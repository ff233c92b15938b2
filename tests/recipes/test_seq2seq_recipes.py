"""The seq2seq tasks: supervised training on pairs (single and multi-task), exact resume, the
label-smoothed loss against its formula, denoising pretraining with each objective, init=RUN."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genlab.core.config import merge
from genlab.core.errors import ConfigError
from genlab.recipes import load_recipe, run_task
from genlab.recipes.seq2seq import pretrain_texts, seq2seq_loss, task_configs, task_prefixes
from genlab.runs import load_run
from genlab.training.checkpoint import find_checkpoint, load_weights

EN = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
FR = ["un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix"]


def write_pairs(path: Path, n: int = 400, seed: int = 0, summary: bool = False) -> Path:
    """Templated pairs: 3-8 English number words -> their French words, or (``summary``) -> the first two."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        idx = [rng.randrange(10) for _ in range(rng.randint(3, 8))]
        src = " ".join(EN[i] for i in idx)
        tgt = " ".join(EN[i] for i in idx[:2]) if summary else " ".join(FR[i] for i in idx)
        lines.append(f"{src}.\t{tgt}.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny(tmp_path: Path, **over) -> dict:
    """seq2seq/tiny on the templated pairs (fp32: runs compare numbers)."""
    pairs = write_pairs(tmp_path / "numbers.tsv")
    base = load_recipe("seq2seq/tiny")
    data = {"tasks": [{"source": str(pairs), "metric": "bleu"}], "vocab_size": 160, "tokenizer_texts": 0}
    train = {"dtype": "fp32", "max_steps": 40, "eval_interval": 20, "decay_steps": 40}
    base = merge(base, {"data": data, "train": train})
    return merge(base, over)


def val_rows(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "val_loss" in r]


def test_tiny_recipe_trains_its_val_loss_falls_and_scores_the_test_split(tmp_path):
    run = tmp_path / "run"
    trainer = run_task(tiny(tmp_path, train={"max_steps": 60, "eval_interval": 20, "decay_steps": 60}), run_dir=run)
    rows = val_rows(run)
    assert len(rows) == 3 and rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.2
    assert {"val_bleu", "val_chrf", "val_score", "val_numbers_bleu"} <= set(rows[-1])
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 60 and results["test_beams"] == 2 and results["test_pairs"] == 8
    assert results["test_score"] == results["test_bleu"] and 0.0 <= results["test_chrf"] <= 100.0
    assert results["best_val_score"] == trainer.best == pytest.approx(max(r["val_score"] for r in rows), abs=1e-5)
    model, tok, config = load_run(run)
    assert tok.kind == "unigram" and tok.vocab_size == model.config.vocab_size == 160
    assert config["data"]["tasks"][0]["name"] == "numbers" and task_prefixes(config) == [""]
    assert model.config.pad_id == tok.pad_id and model.config.eos_id == tok.eos_id


def test_seq2seq_resumes_exactly(tmp_path):
    full = run_task(tiny(tmp_path), run_dir=tmp_path / "a")
    run_task(tiny(tmp_path, train={"max_steps": 20}), run_dir=tmp_path / "b")
    resumed = run_task(tiny(tmp_path), run_dir=tmp_path / "b", resume=True)
    assert resumed.step == full.step == 40
    a = load_run(tmp_path / "a", "last").model.state_dict()
    b = load_run(tmp_path / "b", "last").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert val_rows(tmp_path / "a")[-1]["val_loss"] == val_rows(tmp_path / "b")[-1]["val_loss"]


def test_label_smoothed_loss_matches_its_formula():
    torch.manual_seed(0)
    V, eps = 11, 0.1
    logits = torch.randn(2, 4, V)
    labels = torch.tensor([[3, 5, 1, -100], [2, 1, -100, -100]])

    class Fixed(torch.nn.Module):
        def forward(self, *args):
            return type("Out", (), {"logits": logits})()

    batch = {"input_ids": None, "attention_mask": None, "decoder_input_ids": None, "decoder_attention_mask": None,
             "labels": labels}  # fmt: skip
    loss, metrics = seq2seq_loss(Fixed(), batch, eps)
    logp = F.log_softmax(logits, -1)[labels != -100]  # (N, V)
    y = labels[labels != -100]
    expected = ((1 - eps) * -logp[torch.arange(len(y)), y] + eps * -logp.mean(-1)).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(metrics["ce"], -logp[torch.arange(len(y)), y].mean(), atol=1e-6)
    assert seq2seq_loss(Fixed(), batch)[1] == {}


def test_multitask_mixture_uses_each_prefix_and_scores_each_task(tmp_path):
    summaries = write_pairs(tmp_path / "summaries.tsv", seed=1, summary=True)
    recipe = tiny(tmp_path, train={"max_steps": 20})
    recipe["data"]["tasks"] = [
        {**recipe["data"]["tasks"][0], "prefix": "translate English to French: ", "name": "enfr", "max_train": 150},
        {"source": str(summaries), "prefix": "summarize: ", "metric": "rouge", "name": "sum", "max_train": 150},
    ]
    recipe["data"]["max_source_len"] = 60
    run_task(recipe, run_dir=tmp_path / "mt")
    results = json.loads((tmp_path / "mt" / "results.json").read_text())
    assert {"test_enfr_bleu", "test_enfr_chrf", "test_sum_rouge1", "test_sum_rouge2", "test_sum_rougeL"} <= set(results)
    assert results["test_score"] == pytest.approx((results["test_enfr_bleu"] + results["test_sum_rougeL"]) / 2)
    assert "test_bleu" not in results  # several tasks: only per-task names
    config = load_run(tmp_path / "mt").config
    assert task_prefixes(config) == ["translate English to French: ", "summarize: "]


def test_bad_task_settings_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="metric='meteor'"):
        task_configs([{"source": "a.tsv", "metric": "meteor"}])
    with pytest.raises(ConfigError, match="share a name"):
        task_configs([{"source": "a.tsv"}, {"source": "b/a.tsv"}])
    with pytest.raises(ConfigError, match="unknown key 'data.tasks\\[0\\].prefx'"):
        task_configs([{"source": "a.tsv", "prefx": "x"}])
    with pytest.raises(ConfigError, match="label_smoothing"):
        run_task(tiny(tmp_path, label_smoothing=1.5), run_dir=tmp_path / "ls")


@pytest.mark.parametrize("objective", ["span", "bart", "pegasus"])
def test_pretraining_objectives_train_and_a_supervised_run_starts_from_them(tmp_path, objective):
    texts = tmp_path / "texts.tsv"
    rng = random.Random(2)
    texts.write_text("".join(
        " ".join(f"{' '.join(rng.choice(EN) for _ in range(rng.randint(3, 6))).capitalize()}." for _ in range(3))
        + "\tx\n" for _ in range(300)), encoding="utf-8")  # fmt: skip
    recipe = {
        "task": "seq2seq-pretrain", "objective": objective, "model": {"preset": "seq2seq-micro"},
        "data": {"sources": [str(texts)], "vocab_size": 160, "tokenizer_texts": 0, "max_source_len": 48,
                 "max_target_len": 48, "bucket": 4},
        "train": {"dtype": "fp32", "max_steps": 12, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2,
                  "eval_interval": 6, "eval_batches": 2, "progress": False, "tensorboard": False},
    }  # fmt: skip
    pre = tmp_path / "pre"
    trainer = run_task(recipe, run_dir=pre)
    rows = val_rows(pre)
    assert len(rows) == 2 and rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert json.loads((pre / "results.json").read_text())["objective"] == objective
    assert trainer.step == 12
    train_texts, val_texts = pretrain_texts(
        type("D", (), {"sources": [str(texts)], "val_fraction": 0.05, "test_fraction": 0.05, "salt": "genlab",
                       "min_words": 8, "max_texts": 0})())  # fmt: skip
    assert train_texts and val_texts and not set(train_texts) & set(val_texts)
    # Fine-tuning starts from the pretrained weights and tokenizer (the pairs are other text).
    tuned = tmp_path / "tuned"
    run_task(tiny(tmp_path, init=str(pre), model={"preset": "seq2seq-micro"}, train={"max_steps": 2}), run_dir=tuned)
    start = load_run(pre, "best").model.state_dict()
    assert (tuned / "tokenizer.json").read_text() == (pre / "tokenizer.json").read_text()
    assert load_run(tuned).model.config == load_run(pre).model.config
    moved = load_run(tuned, "last").model.state_dict()
    assert set(start) == set(moved) and any(not torch.equal(start[k], moved[k]) for k in start)


def test_init_must_be_a_seq2seq_run_and_keeps_its_architecture(tmp_path):
    run_task(tiny(tmp_path, train={"max_steps": 2, "eval_interval": 2}), run_dir=tmp_path / "base")
    with pytest.raises(ConfigError, match="only model.dropout may be set"):
        run_task(tiny(tmp_path, init=str(tmp_path / "base"), model={"n_layer": 4}), run_dir=tmp_path / "x")
    weights = find_checkpoint(tmp_path / "base" / "checkpoints", "best") / "model.safetensors"
    model = load_run(tmp_path / "base").model
    load_weights(model, weights)  # the stored checkpoint loads into the run's own architecture
