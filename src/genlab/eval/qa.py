"""Answer metrics for question answering: exact match, token F1 and groundedness.

Exact match and token F1 are SQuAD's (Rajpurkar et al. 2016, arXiv:1606.05250): both texts are
normalised (lower case, punctuation and the articles a/an/the removed, whitespace collapsed), then

    EM       = 1[norm(pred) == norm(gold)]
    P, R     = |pred ∩ gold| / |pred|,  |pred ∩ gold| / |gold|    (token multisets)
    F1       = 2 P R / (P + R)

With several gold answers a prediction scores its best. Groundedness is the share of the answer's
tokens that occur in the passages it cites (Es et al. 2023's RAGAS "faithfulness" asks an LLM; here
it is the plain lexical form the issue asks for): 1.0 when every word of the answer is in a cited
passage, 0.0 for an answer that cites nothing. Citation marks ``[n]`` are not answer tokens.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """The normalised words of an answer, its citation marks ``[n]`` removed."""
    return normalize(_CITATION.sub(" ", text)).split()


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    golds = [gold] if isinstance(gold, str) else list(gold)
    pred = normalize(_CITATION.sub(" ", prediction))
    return float(any(pred == normalize(g) for g in golds))


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Token F1 of ``prediction`` against the best of ``gold`` (0.0 when either side is empty, unless both are)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    pred = answer_tokens(prediction)
    best = 0.0
    for g in golds:
        want = normalize(g).split()
        if not pred or not want:
            best = max(best, float(pred == want))
            continue
        common = sum((Counter(pred) & Counter(want)).values())
        if common:
            p, r = common / len(pred), common / len(want)
            best = max(best, 2 * p * r / (p + r))
    return best


def groundedness(answer: str, cited: Iterable[str]) -> float:
    """Share of the answer's tokens found among the tokens of the ``cited`` passages (0.0 for none cited)."""
    words = answer_tokens(answer)
    vocab = {w for text in cited for w in normalize(text).split()}
    if not words or not vocab:
        return 0.0
    return sum(w in vocab for w in words) / len(words)


__all__ = ["answer_tokens", "exact_match", "groundedness", "normalize", "token_f1"]
