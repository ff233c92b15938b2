"""Seq2seq metrics: BLEU is corpus-level (checked by hand), chrF and ROUGE on hand-made pairs, and the
copy, word-by-word and lead baselines."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from genlab.core.errors import ConfigError
from genlab.eval import seq2seq as s2s


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _bleu_by_hand(hyps: list[str], refs: list[str]) -> float:
    """Papineni et al.'s corpus BLEU on whitespace tokens (the examples need no 13a tokenization)."""
    matches, totals = [0] * 4, [0] * 4
    c = r = 0
    for h, ref in zip(hyps, refs):
        hw, rw = h.split(), ref.split()
        c, r = c + len(hw), r + len(rw)
        for n in range(1, 5):
            hn, rn = _ngrams(hw, n), _ngrams(rw, n)
            matches[n - 1] += sum((hn & rn).values())
            totals[n - 1] += sum(hn.values())
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    bp = min(1.0, math.exp(1 - r / c))
    return 100 * bp * math.exp(log_p)


HYPS = ["the cat sat on the mat today", "a dog ran in the big park", "it is raining in paris now"]
REFS = ["the cat sat on the red mat today", "the dog ran in the big park", "it is raining in paris"]


def test_bleu_is_corpus_level_papineni() -> None:
    assert s2s.bleu(HYPS, REFS) == pytest.approx(_bleu_by_hand(HYPS, REFS), abs=1e-9)
    sentence_mean = sum(s2s.bleu([h], [r]) for h, r in zip(HYPS, REFS)) / 3
    assert s2s.bleu(HYPS, REFS) != pytest.approx(sentence_mean, abs=1e-3)


def test_perfect_and_empty_hypotheses() -> None:
    m = s2s.translation_metrics(REFS, REFS)
    assert m["bleu"] == pytest.approx(100.0) and m["chrf"] == pytest.approx(100.0) and m["pairs"] == 3
    assert s2s.bleu([""] * 3, REFS) == 0.0
    r = s2s.rouge(REFS, REFS)
    assert all(r[t] == pytest.approx(100.0) for t in s2s.ROUGE_TYPES)


def test_chrf_rewards_partial_words() -> None:
    close = s2s.chrf(["the cats sit on the mat"], ["the cat sat on the mat"])
    far = s2s.chrf(["completely different words here"], ["the cat sat on the mat"])
    assert 40 < close < 100 and far < 15


def test_rouge_by_hand() -> None:
    r = s2s.rouge(["the cat sat", "a b c d"], ["the cat ran", "a b c d"])
    # pair 1: R1 F1 = 2/3, R2 F1 = 1/2 ("the cat"), RL = LCS 2 -> 2/3; pair 2: all 1
    assert r["rouge1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert r["rouge2"] == pytest.approx(100 * (1 / 2 + 1) / 2)
    assert r["rougeL"] == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_word_by_word_keeps_unknown_words_and_case() -> None:
    dictionary = {"the": "le", "cat": "chat", "opens": "ouvre", "file": "fichier"}
    out = s2s.word_by_word(["The cat opens the file, quickly.", "(Cat)"], dictionary)
    assert out == ["Le chat ouvre le fichier, quickly.", "(Chat)"]


def test_copy_and_baselines_report() -> None:
    b = s2s.translation_baselines(REFS, REFS, {"cat": "chat"})
    assert b["copy"]["bleu"] == pytest.approx(100.0)
    assert b["word_by_word"]["bleu"] < 100.0


def test_lead_is_tuned_on_validation() -> None:
    docs = ["alpha beta gamma delta epsilon zeta eta theta", "one two three four five six seven eight"]
    sums = ["alpha beta gamma", "one two three"]
    assert s2s.lead(docs, 2) == ["alpha beta", "one two"]
    n, scores = s2s.tune_lead(docs, sums, range(1, 8))
    assert n == 3 and scores["rouge1"] == pytest.approx(100.0)
    out = s2s.summary_baselines((docs, sums), (docs, sums), range(1, 8))
    assert out["lead_n"] == 3 and out["test"]["rougeL"] == pytest.approx(100.0)


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="2 hypotheses for 3 references"):
        s2s.bleu(HYPS[:2], REFS)
    with pytest.raises(ConfigError, match="no references"):
        s2s.rouge([], [])
    with pytest.raises(ConfigError, match="at least 1"):
        s2s.lead(["x"], 0)


def test_real_baselines_report_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from genlab.core.errors import DataError
    from genlab.data import sources
    from genlab.data.parallel import Pair

    pairs = [Pair(f"the cat {i} sat on the mat", f"le chat {i}", f"g{i}") for i in range(300)]

    def load_pairs(name: str) -> list[Pair]:
        if name == "manpages":
            raise DataError("manpages is not available here: install with: sudo apt-get install manpages")
        return pairs

    monkeypatch.setattr(sources, "load_pairs", load_pairs)
    monkeypatch.setattr(sources, "load_dictionary", lambda name: {"the": "le", "cat": "chat"})
    out = s2s.real_baselines(splits=("validation",), val_fraction=0.1, test_fraction=0.1)
    assert out["manpages"] == {"missing": "manpages is not available here: install with: sudo apt-get install manpages"}
    help_ = out["help-en-fr"]
    assert help_["counts"]["validation"] > 0 and "test" not in help_
    assert help_["validation"]["word_by_word"]["bleu"] > help_["validation"]["copy"]["bleu"]
    assert "test" not in out["debian-descriptions"]["lead"]
