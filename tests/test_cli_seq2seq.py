"""genlab train / sample / eval / convert with seq2seq runs: the happy paths and one-line errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from test_cli import genlab, one_line_error

from genlab.core.config import load_yaml, save_yaml, to_dict
from genlab.core.registry import preset

EN = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
FR = ["un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix"]


def write_pairs(path: Path, n: int = 300) -> Path:
    """Templated pairs: English number words -> French number words."""
    rng = random.Random(0)
    rows = [[rng.randrange(10) for _ in range(rng.randint(3, 8))] for _ in range(n)]
    path.write_text("".join(f"{' '.join(EN[i] for i in r)}.\t{' '.join(FR[i] for i in r)}.\n" for r in rows))
    return path


def overrides(pairs: Path, steps: int = 30) -> list[str]:
    return [f"data.tasks=[{{source: {pairs}, metric: bleu}}]", "data.vocab_size=160", "data.tokenizer_texts=0",
            f"train.max_steps={steps}", "train.eval_interval=15", "train.dtype=fp32"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("s2s-cli")
    pairs = write_pairs(root / "numbers.tsv")
    code, _, _ = genlab("train", "seq2seq/tiny", *overrides(pairs), "--out", root / "run")
    assert code == 0
    return root / "run"


def test_sample_decodes_inputs_greedy_beams_and_samples(run, capsys):
    code, out, err = genlab("sample", run, "--input", "one two three.", "--temperature", "0", capsys=capsys)
    assert code == 0 and err == "" and len(out.strip().splitlines()) == 1
    code, out, _ = genlab("sample", run, "--input", "one two.", "--input", "four five six.", "--beams", "2",
                          "--num-samples", "2", capsys=capsys)  # fmt: skip
    assert code == 0
    assert out.count("=== ") == 2 and out.count("--- sample 1 (score ") == 2 and out.count("--- sample 2 (score ") == 2
    code, out, _ = genlab("sample", run, "--input", "one two.", "--temperature", "1", "--num-samples", "3",
                          capsys=capsys)  # fmt: skip
    assert code == 0 and out.count("--- sample ") == 3


def test_eval_reports_bleu_and_chrf_of_the_test_split(run, capsys):
    code, out, _ = genlab("eval", run, "--limit", "6", "--beams", "2", capsys=capsys)
    assert code == 0
    figures = json.loads(out)
    assert figures["task"] == "seq2seq" and figures["split"] == "test" and figures["beams"] == 2
    assert figures["test_pairs"] == 6 and {"test_bleu", "test_chrf", "test_score"} <= set(figures)
    results = json.loads((run / "results.json").read_text())
    code, out, _ = genlab("eval", run, capsys=capsys)  # the run's own settings: results.json's figures
    assert json.loads(out)["test_bleu"] == results["test_bleu"]


def test_bad_input_gives_one_line(run, tmp_path, capsys):
    one_line_error(capsys, "sample", run, "--prompt", "one", match="give the text to encode with --input")
    one_line_error(capsys, "sample", run, match="give the text to encode with --input")
    one_line_error(capsys, "sample", run, "--input", "  ", match="--input 1 is empty")
    long = " ".join(["one"] * 200)
    one_line_error(capsys, "sample", run, "--input", long, match="exceeds the encoder's context of 64")
    code, out, _ = genlab("sample", run, "--input", long, "--context", "truncate", capsys=capsys)
    assert code == 0
    one_line_error(capsys, "sample", run, "--input", "one", "--stream", match="--stream, --show-logprobs and --stop")
    one_line_error(capsys, "eval", run, "--task", "classify", match="--task is for encoder runs")
    one_line_error(capsys, "convert", "genlab-to-hf", run, tmp_path / "hf", match="is a seq2seq (encoder-decoder) run")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    save_yaml({"task": "lm", "model": {"family": "gpt", **to_dict(preset("gpt-micro"))}}, gpt / "config.yaml")
    one_line_error(capsys, "sample", gpt, "--input", "hello", match="is not a seq2seq run: --input")


def test_a_prefix_the_multitask_model_was_not_trained_on_warns(run, tmp_path, capsys):
    multi = tmp_path / "multi"
    shutil.copytree(run, multi)
    config = load_yaml(multi / "config.yaml")
    task = config["data"]["tasks"][0]
    config["data"]["tasks"] = [{**task, "prefix": "translate English to French: ", "name": "a"},
                               {**task, "prefix": "summarize: ", "name": "b"}]  # fmt: skip
    save_yaml(config, multi / "config.yaml")
    code, out, err = genlab("sample", multi, "--input", "paraphrase: one two.", capsys=capsys)
    assert code == 0
    assert "warning: the input starts with no task prefix" in err
    assert "'translate English to French: ', 'summarize: '" in err
    code, _, err = genlab("sample", multi, "--input", "summarize: one two.", capsys=capsys)
    assert code == 0 and err == ""


def test_a_pair_file_that_does_not_pair_up_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("one.\tun.\ntwo. deux.\n")
    line = one_line_error(capsys, "train", "seq2seq/tiny", *overrides(bad), "--out", tmp_path / "r", match="line 2")
    assert "bad.tsv" in line
