"""genlab probe bias / zero-shot on the command line: tables, JSON, and one-line errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import genlab, one_line_error

from genlab.core.config import save_yaml, to_dict
from genlab.core.errors import DataError
from genlab.core.registry import preset
from genlab.data.corpora import TopicData, topic_dataset
from genlab.eval import bias
from genlab.models.bert import Bert
from genlab.models.gpt import GPT
from genlab.recipes import probe
from genlab.tokenizers import BPETokenizer, WordPieceTokenizer
from genlab.training.checkpoint import save_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "shakespeare-40k.txt"


@pytest.fixture(scope="module")
def wordpiece():
    return WordPieceTokenizer.train(FIXTURE.read_text(encoding="utf-8"), vocab_size=300)


SMALL = {"max_per_topic": 20}  # 17 topics x 20 fortunes: the real task, cut down for speed


def _bert_run(path: Path, tok, task: str = "mlm", data: dict | None = None, **over) -> Path:
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=tok.vocab_size, block_size=32, **over)
    path.mkdir(parents=True)
    tok.save(path)
    save_yaml({"task": task, "model": {"family": "bert", **to_dict(cfg)}, "data": data or {}, "init": "scratch",
               "train": {"max_steps": 0}}, path / "config.yaml")  # fmt: skip
    save_checkpoint(path / "checkpoints", 0, {"model": Bert(cfg)}, {}, ("last", "best"))
    return path


def _gpt_run(path: Path) -> Path:
    tok = BPETokenizer.train(FIXTURE.read_text(encoding="utf-8"), vocab_size=400)
    cfg = dataclasses.replace(preset("gpt-micro"), vocab_size=tok.vocab_size, block_size=64)
    path.mkdir(parents=True)
    tok.save(path)
    save_yaml({"task": "lm", "model": {"family": "gpt", **to_dict(cfg)}, "data": {"source": "fixture"}},
              path / "config.yaml")  # fmt: skip
    save_checkpoint(path / "checkpoints", 0, {"model": GPT(cfg)}, {}, ("last", "best"))
    return path


def _fortunes():
    try:
        return topic_dataset(TopicData(**SMALL))
    except DataError:
        pytest.skip("Debian fortunes not installed")


@pytest.mark.slow  # loads MiniLM (~10-40 s on a busy machine); the bert-run test covers the same code
def test_bias_on_minilm_prints_the_weat_table(capsys):
    code, out, err = genlab("probe", "bias", "minilm", "--test", "weat9", "--test", "weat6", capsys=capsys)
    assert code == 0, err
    assert "WEAT on all-MiniLM-L6-v2" in out
    rows = [line for line in out.splitlines() if line.startswith("| weat")]
    assert [r.split("|")[1].strip() for r in rows] == ["weat9", "weat9", "weat6", "weat6"]
    assert "| sentence |" in rows[0] and "| static |" in rows[1]
    assert "| 6, 6, 7, 7 |" in rows[0] and "| 1.38 |" in rows[0]  # sizes, and the paper's GloVe d


def test_bias_json_of_a_bert_run_and_an_lm(wordpiece, tmp_path, capsys):
    enc = _bert_run(tmp_path / "enc", wordpiece)
    lm = _gpt_run(tmp_path / "lm")
    code, out, err = genlab("probe", "bias", enc, "--lm", lm, "--test", "weat10", "--json", capsys=capsys)
    assert code == 0, err
    rep = json.loads(out)
    rows = rep["weat"]["rows"]
    assert [r["view"] for r in rows] == ["sentence", "static"] and all(r["exact"] for r in rows)
    assert all(r["partitions"] == 12870 and -2 <= r["effect_size"] <= 2 for r in rows)
    pro = rep["pronouns"]
    assert len(pro["rows"]) == len(bias.OCCUPATIONS) + len(bias.CONTROLS)
    assert pro["summary"]["lean_he"] + pro["summary"]["lean_she"] == len(bias.OCCUPATIONS)
    assert pro["tokenizer"] == "bpe"
    # a gpt run given as the model is the LM: the pronoun table alone
    code, out, err = genlab("probe", "bias", lm, capsys=capsys)
    assert code == 0, err
    assert "WEAT" not in out and "Pronoun completion on" in out and "| nurse |" in out and "(control)" in out


def test_weat_marks_words_missing_from_the_vocabulary(tmp_path):
    # a vocabulary trained on Shakespeare lacks some of the characters of no word list; make one
    # that lacks 'z': every word with a z maps to [UNK] and is missing
    text = FIXTURE.read_text(encoding="utf-8").replace("z", "s").replace("Z", "S")
    tok = WordPieceTokenizer.train(text, vocab_size=300)
    enc = _bert_run(tmp_path / "enc", tok)
    rep = probe.run_weats(str(enc), ["weat1"], samples=2000)
    row = rep["rows"][0]
    assert set(row["missing"]) == {"azalea", "zinnia"}  # the z words of WEAT 1, both flowers
    assert row["n_x"] == row["n_y"] == 23 and len(row["dropped"]) == 2  # two insects dropped to match
    assert row["partitions"] == 2000 and not row["exact"]


def test_bias_errors_are_one_line(wordpiece, tmp_path, capsys):
    enc = _bert_run(tmp_path / "enc", wordpiece)
    one_line_error(capsys, "probe", "bias", match="nothing to probe")
    one_line_error(capsys, "probe", "bias", "minilm", "--test", "weat11", match="no WEAT named 'weat11'")
    one_line_error(capsys, "probe", "bias", "--lm", enc, match="needs a causal LM (gpt) run")
    one_line_error(capsys, "probe", "bias", "--lm", tmp_path / "nope", match="not a genlab run directory")
    one_line_error(capsys, "probe", "bias", tmp_path / "nope", match="no model named")


def test_zero_shot_table_with_a_finetuned_run(wordpiece, tmp_path, capsys):
    ds = _fortunes()
    enc = _bert_run(tmp_path / "enc", wordpiece)
    clf = _bert_run(tmp_path / "clf", wordpiece, task="encoder-classify", data=SMALL, heads=["sequence"],
                    num_labels=len(ds.classes))  # fmt: skip
    args = ("probe", "zero-shot", enc, "--finetuned", clf, "--k", "1", "--k", "2", "--seeds", "2")
    code, out, err = genlab(*args, "--json", capsys=capsys)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["classes"] == ds.classes and rep["sizes"]["test"] == len(ds.test) == 17 * 4  # the run's split
    assert rep["data"]["max_per_topic"] == 20
    assert rep["zero_shot"]["chosen"] in ("name", "description")
    assert [r["k"] for r in rep["few_shot"]] == [1, 2] and rep["few_shot"][0]["seeds"] == [0, 1]
    for r in [*rep["few_shot"], rep["finetuned"], rep["zero_shot"]["styles"]["name"]["test"]]:
        assert 0.0 <= r["macro_f1"] <= r["accuracy"] + 1.0 and 0.0 <= r["accuracy"] <= 1.0
    # the fine-tuned figure is the classifier's own test accuracy (genlab eval computes it too)
    from genlab.runs.evaluate import evaluate_classifier

    assert rep["finetuned"]["accuracy"] == pytest.approx(evaluate_classifier(clf)["accuracy"])
    table = probe.zero_shot_markdown(rep)
    assert "| zero-shot, label descriptions | 0 |" in table and "few-shot logistic probe, k=2 (2 seeds) | 34 |" in table
    assert "| fine-tuned classifier (" in table
    assert np.isclose(rep["chance"], 1 / len(ds.classes))


def test_zero_shot_errors_are_one_line(wordpiece, tmp_path, capsys):
    enc = _bert_run(tmp_path / "enc", wordpiece)
    one_line_error(capsys, "probe", "zero-shot", enc, "--task", "imdb", match="no zero-shot task 'imdb'")
    one_line_error(capsys, "probe", "zero-shot", enc, "--finetuned", enc, match="not a fortune-topic classifier")
    one_line_error(capsys, "probe", "zero-shot", enc, "--seeds", "0", match="--seeds must be at least 1")
