"""The ``qa`` recipe: a reader run that load_run gives back with its QA head, and reads spans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.core.config import from_dict
from genlab.core.errors import ConfigError
from genlab.data.span_qa import KIND
from genlab.rag.reader import ExtractiveReader
from genlab.recipes import load_recipe, run_task
from genlab.recipes.reader import ReaderRecipe, answerer, eval_answers
from genlab.runs import load_run

pytestmark = pytest.mark.skipif(
    not (Path("/usr/share/dictd/elements.index").is_file() and Path("/usr/share/dictd/jargon.index").is_file()),
    reason="needs Debian dict-elements and dict-jargon",
)


def tiny_reader(**train) -> dict:
    return {
        "task": "qa",
        "init": "scratch",
        "model": {"preset": "bert-micro", "block_size": 64},
        "data": {
            "sources": ["elements", "jargon"],
            "dictionary_limit": 60,
            "max_train": 24,
            "max_eval": 4,
            "max_length": 64,
            "stride": 16,
            "vocab_size": 400,
        },  # fmt: skip
        "train": {
            "dtype": "fp32",
            "max_steps": 2,
            "batch_size": 4,
            "lr": 1e-3,
            "warmup_steps": 1,
            "eval_interval": 2,
            "log_interval": 1,
            "progress": False,
            "tensorboard": False,
            "best_metric": "val_f1",
            "best_mode": "max",
            **train,
        },  # fmt: skip
    }


def test_the_reader_recipe_config_parses():
    r = from_dict(ReaderRecipe, load_recipe("rag/reader"))
    assert r.task == "qa" and r.init == "minilm" and r.train.best_metric == "val_f1"


def test_reader_run_round_trips_through_load_run(tmp_path):
    run_task(tiny_reader(), run_dir=tmp_path / "reader")
    model, tok, config = load_run(tmp_path / "reader")
    assert model.config.heads == ["qa"] and config["task"] == "qa"
    results = json.loads((tmp_path / "reader" / "results.json").read_text())
    assert results["data_kind"] == KIND and 0.0 <= results["test_f1"] <= 1.0
    sources = set(results["test"]) - {"exact_match", "f1", "abstained", "n"}
    assert results["test"]["n"] > 0 and sources <= {"elements", "jargon"}
    reader = ExtractiveReader.from_run(tmp_path / "reader")
    assert reader.max_length == 64 and reader.stride == 16
    spans = reader.spans("What is the atomic number of Iron?", ["iron\nSymbol: Fe\nAtomic number: 26"])
    assert spans and spans[0].passage == 0 and spans[0].text in "iron\nSymbol: Fe\nAtomic number: 26"
    metrics = [json.loads(line) for line in (tmp_path / "reader" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_f1" in m for m in metrics)


def test_bad_negatives_share_is_one_line(tmp_path):
    recipe = tiny_reader()
    recipe["data"]["negatives"] = 2.0
    with pytest.raises(ConfigError, match=r"data.negatives is a share .* got 2.0"):
        run_task(recipe, run_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_answerer_needs_a_model_or_an_endpoint():
    with pytest.raises(ConfigError, match="--answer extractive needs --model RUN"):
        answerer("extractive")
    with pytest.raises(ConfigError, match="needs --llm-url URL .* or --model RUN"):
        answerer("generative")
    with pytest.raises(ConfigError, match="unknown reader 'magic'"):
        answerer("magic")


def test_eval_answers_hook_runs_the_reader_over_the_retriever():
    from genlab.rag.answer import Answer, Citation
    from genlab.rag.types import Chunk, Hit

    chunk = Chunk(0, "elements", "elements", "iron", "", 0, "iron Atomic number: 26")

    class Retriever:
        def search(self, question, mode, k):
            assert (mode, k) == ("bm25", 2)
            return [Hit(chunk, 1.0, 1)]

    reply = lambda q, hits, t: Answer("26 [1]", [Citation(1, hits[0].chunk)], chunks=[hits[0].chunk])
    out = eval_answers(reply, "bm25", 2)(Retriever(), [{"question": "Z of iron?", "answers": ["26"]}])
    assert out == {"mode": "bm25", "k": 2, "threshold": None, "n": 1, "exact_match": 1.0, "f1": 1.0,
                   "groundedness": 1.0, "abstained": 0.0}  # fmt: skip
