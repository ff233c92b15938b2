"""Corpus-level metrics for translation and summarisation, and the baselines a model must beat.

Translation (sacrebleu, Post 2018, arXiv:1804.08771, the reference implementation):

- BLEU (Papineni et al. 2002): the geometric mean of clipped n-gram precisions p_n, n = 1..4,
  over the whole corpus, times the brevity penalty::

      BLEU = BP * exp( (1/4) sum_n log p_n ),   BP = min(1, exp(1 - r / c))

  (r reference length, c hypothesis length), with sacrebleu's ``13a`` tokenization, on 0-100.
- chrF (Popović 2015): the character n-gram (n = 1..6) F-score with beta = 2 (recall weighted
  twice as much as precision), on 0-100.

Summarisation (rouge-score, Google's reimplementation of Lin 2004): ROUGE-1 and ROUGE-2 (unigram
and bigram overlap F1) and ROUGE-L (F1 of the longest common subsequence), each the mean of the
per-pair F1, on 0-100, without stemming (``stem=True`` for Porter stemming as in the PEGASUS and
BART papers).

Baselines, computed on the same pairs:

- :func:`copy_source`: the source as the hypothesis (shared names, numbers and punctuation score
  points even across languages);
- :func:`word_by_word`: each word replaced by its first dictionary translation
  (:func:`genlab.data.parallel.read_dictd` over a freedict dictionary), unknown words kept;
- :func:`lead`: the first n words of the document, n tuned on the validation split
  (:func:`tune_lead`).

``rouge_score`` imports nltk, which takes seconds: it is imported when first needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from genlab.core.errors import ConfigError


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ConfigError(f"{len(hypotheses)} hypotheses for {len(references)} references: give one per reference")
    if not references:
        raise ConfigError("no references to score against: give at least one pair")


def bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """sacreBLEU corpus BLEU (0-100) of hypotheses against one reference each."""
    import sacrebleu

    _check(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus chrF (0-100, beta 2, character 6-grams)."""
    import sacrebleu

    _check(hypotheses, references)
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def translation_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{"bleu", "chrf", "pairs"} of a corpus of translations."""
    return {"bleu": bleu(hypotheses, references), "chrf": chrf(hypotheses, references), "pairs": len(references)}


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(hypotheses: Sequence[str], references: Sequence[str], stem: bool = False) -> dict[str, float]:
    """{"rouge1", "rouge2", "rougeL", "pairs"}: the mean F1 (0-100) over pairs (rouge-score)."""
    from rouge_score import rouge_scorer

    _check(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stem)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score(ref, hyp)  # rouge-score takes (target, prediction)
        for t in ROUGE_TYPES:
            totals[t] += scores[t].fmeasure
    out: dict[str, float] = {t: 100.0 * v / len(references) for t, v in totals.items()}
    out["pairs"] = len(references)
    return out


# ------------------------------------------------------------------------------------------
# Baselines.


def copy_source(sources: Iterable[str]) -> list[str]:
    """The copy baseline: each source is its own translation."""
    return list(sources)


_WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)
_NO_SPACE_BEFORE = frozenset(",.;:!?)]}%»")
_NO_SPACE_AFTER = frozenset("([{«")


def _detokenize(tokens: Sequence[str]) -> str:
    out = ""
    for tok in tokens:
        if out and not (tok in _NO_SPACE_BEFORE or out[-1] in _NO_SPACE_AFTER):
            out += " "
        out += tok
    return out


def word_by_word(sources: Iterable[str], dictionary: Mapping[str, str]) -> list[str]:
    """Each word replaced by ``dictionary[word.lower()]`` (kept when unknown); a capitalised word's
    translation is capitalised; punctuation kept."""
    out = []
    for text in sources:
        tokens = []
        for tok in _WORD.findall(text):
            tr = dictionary.get(tok.lower())
            if tr is None:
                tokens.append(tok)
            else:
                tokens.append(tr[:1].upper() + tr[1:] if tok[:1].isupper() else tr)
        out.append(_detokenize(tokens))
    return out


def lead(sources: Iterable[str], n: int) -> list[str]:
    """The lead baseline: the first ``n`` whitespace-separated words of each document."""
    if n < 1:
        raise ConfigError(f"lead n={n} must be at least 1")
    return [" ".join(text.split()[:n]) for text in sources]


def tune_lead(
    sources: Sequence[str], references: Sequence[str], candidates: Iterable[int] = range(1, 41), stem: bool = False
) -> tuple[int, dict[str, float]]:
    """(n, ROUGE of lead-n) for the n among ``candidates`` with the highest mean of ROUGE-1/2/L on
    these (validation) pairs; ties go to the smaller n."""
    best: tuple[float, int, dict[str, float]] | None = None
    for n in candidates:
        scores = rouge(lead(sources, n), references, stem)
        key = sum(scores[t] for t in ROUGE_TYPES) / len(ROUGE_TYPES)
        if best is None or key > best[0]:
            best = (key, n, scores)
    if best is None:
        raise ConfigError("tune_lead needs at least one candidate n")
    return best[1], best[2]


def translation_baselines(
    sources: Sequence[str], references: Sequence[str], dictionary: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """BLEU/chrF of the copy and word-by-word baselines on the same pairs."""
    return {
        "copy": translation_metrics(copy_source(sources), references),
        "word_by_word": translation_metrics(word_by_word(sources, dictionary), references),
    }


def summary_baselines(
    val: tuple[Sequence[str], Sequence[str]],
    test: tuple[Sequence[str], Sequence[str]] | None = None,
    candidates: Iterable[int] = range(1, 41),
) -> dict[str, float | dict[str, float]]:
    """Lead-n tuned on ``val`` (documents, summaries), then scored on ``test`` when given."""
    n, val_scores = tune_lead(val[0], val[1], candidates)
    out: dict[str, float | dict[str, float]] = {"lead_n": n, "validation": val_scores}
    if test is not None:
        out["test"] = rouge(lead(test[0], n), test[1])
    return out


def real_baselines(
    splits: Sequence[str] = ("validation", "test"), val_fraction: float = 0.05, test_fraction: float = 0.05
) -> dict[str, dict]:
    """The baselines on genlab's real pair sources, split by group (:func:`genlab.data.parallel.split_by_group`):
    copy and word-by-word BLEU/chrF for ``help-en-fr`` (eng-fra dictionary) and ``ding-de-en``
    (deu-eng), lead-n ROUGE for ``debian-descriptions`` and ``manpages`` (n tuned on validation).
    A source that is not available here is reported as ``{"missing": hint}``."""
    from genlab.core.errors import DataError
    from genlab.data.parallel import split_by_group
    from genlab.data.sources import load_dictionary, load_pairs

    out: dict[str, dict] = {}
    for name, dictionary in (("help-en-fr", "eng-fra"), ("ding-de-en", "deu-eng")):
        try:
            split = split_by_group(load_pairs(name), val_fraction, test_fraction)
            words = load_dictionary(dictionary)
        except DataError as exc:
            out[name] = {"missing": str(exc)}
            continue
        out[name] = {"counts": split.counts()}
        for part in splits:
            pairs = getattr(split, part)
            out[name][part] = translation_baselines([p.src for p in pairs], [p.tgt for p in pairs], words)
    for name in ("debian-descriptions", "manpages"):
        try:
            split = split_by_group(load_pairs(name), val_fraction, test_fraction)
        except DataError as exc:
            out[name] = {"missing": str(exc)}
            continue
        val = ([p.src for p in split.validation], [p.tgt for p in split.validation])
        test = ([p.src for p in split.test], [p.tgt for p in split.test]) if "test" in splits else None
        out[name] = {"counts": split.counts(), "lead": summary_baselines(val, test)}
    return out
