"""Caption metrics: BLEU-4 and CIDEr-D over all references of each image, and the nearest-neighbour baseline.

Captions are compared lower-cased with punctuation removed (what the COCO caption evaluation's
PTB tokenizer does; a word-level tokenizer's decoded output and a human caption then agree on
"it's" / "it 's" and on capitals).

- BLEU-4 (Papineni et al. 2002) through sacrebleu (Post 2018, arXiv:1804.08771): corpus level,
  the geometric mean of the clipped 1- to 4-gram precisions times the brevity penalty, each image's
  hypothesis matched against all of its references (sacrebleu pads the reference streams of images
  with fewer references with None), on 0-100.
- CIDEr-D (Vedantam et al. 2015, arXiv:1411.5726) through ``pycocoevalcap``'s scorer (the COCO
  evaluation's own, pure Python; its Java tokenizer is not used)::

      g_k(s)     = tf(w_k, s) * log(|I| / max(1, df(w_k)))           tf-idf of n-gram w_k in sentence s
      CIDEr_n    = 10 / m * sum_j exp(-(l(c) - l(s_j))^2 / (2 sigma^2))
                   * <min(g^n(c), g^n(s_j)), g^n(s_j)> / (|g^n(c)| |g^n(s_j)|)
      CIDEr-D    = 1/4 sum_{n=1..4} CIDEr_n                          averaged over the images

  with df counted over the references of the images scored (|I| of them), m references of the
  image, sigma = 6 and the hypothesis' counts clipped by the reference's ("D": no gaming by
  repetition). 0 for nothing in common; papers often quote it x100.
- The nearest-neighbour baseline (as in Devlin et al. 2015, arXiv:1505.04467, "exploring nearest
  neighbor approaches"): each image gets the caption of the closest training image by cosine
  similarity of image features, whatever features the caller gives (the captioning recipe uses its
  own trained encoder's pooled features).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from genlab.core.errors import ConfigError

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-case, punctuation removed, single spaces: the form every caption is scored in."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ConfigError(f"{len(hypotheses)} captions for {len(references)} images' references: give one per image")
    if not references:
        raise ConfigError("no images to score: give at least one caption and its references")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ConfigError(f"image {i} needs a list of one or more reference captions, got {refs!r}")


def bleu4(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (0-100, sacrebleu) of one caption per image against all of that image's references."""
    import sacrebleu

    _check(hypotheses, references)
    width = max(len(r) for r in references)
    streams = [[normalize(r[j]) if j < len(r) else None for r in references] for j in range(width)]
    return float(sacrebleu.corpus_bleu([normalize(h) for h in hypotheses], streams).score)


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D (the mean over images; 0-10) of one caption per image; the document
    frequencies come from these images' references."""
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigError("CIDEr needs pycocoevalcap: pip install pycocoevalcap (pure Python for CIDEr)") from exc
    _check(hypotheses, references)
    if len(references) < 2:
        raise ConfigError("CIDEr's idf needs at least two images (with one, log(|I| / df) is 0 for every n-gram)")
    gts = {i: [normalize(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [normalize(h)] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def caption_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"bleu4", "cider", "images"} of one caption per image."""
    return {"bleu4": bleu4(hypotheses, references), "cider": cider_d(hypotheses, references),
            "images": len(references)}  # fmt: skip


def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each query feature (Q, F) the index of the most cosine-similar key (K, F) -> (Q,)."""
    if queries.dim() != 2 or keys.dim() != 2 or queries.size(1) != keys.size(1):
        raise ConfigError(f"features must be (Q, F) and (K, F), got {tuple(queries.shape)} and {tuple(keys.shape)}")
    k = torch.nn.functional.normalize(keys.float(), dim=-1)  # (K, F)
    out = []
    for i in range(0, len(queries), chunk):
        q = torch.nn.functional.normalize(queries[i : i + chunk].float(), dim=-1)  # (q, F)
        out.append((q @ k.T).argmax(-1))  # (q,)
    return torch.cat(out)


def nearest_neighbour_captions(queries: torch.Tensor, keys: torch.Tensor, captions: Sequence[str]) -> list[str]:
    """The baseline: each query image's caption is that of its nearest training image in feature space."""
    if len(captions) != len(keys):
        raise ConfigError(f"{len(captions)} training captions for {len(keys)} training features")
    return [captions[j] for j in nearest_neighbours(queries, keys).tolist()]


__all__ = ["bleu4", "caption_metrics", "cider_d", "nearest_neighbour_captions", "nearest_neighbours", "normalize"]
