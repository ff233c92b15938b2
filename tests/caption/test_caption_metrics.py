"""Caption metrics: CIDEr-D on a hand-computed example, BLEU-4 against sacrebleu, the nearest-neighbour baseline."""

import math

import pytest
import sacrebleu
import torch

from genlab.core.errors import ConfigError
from genlab.eval.captioning import bleu4, caption_metrics, cider_d, nearest_neighbour_captions, normalize


def test_cider_d_on_a_hand_computed_example():
    """Three images, one reference each; |I| = 3, so idf(w) = log(3 / max(1, df(w))) =: L for every
    n-gram seen in at most one image's references (or none), and 0 for "a" (in all three).

    Image 1: "a cat cat" against "a red cat".
        unigrams  hyp: a 0, cat 2L (tf 2)       |g| = 2L
                  ref: a 0, red L, cat L        |g| = L sqrt 2
                  clipped dot: min(2L, L) * L = L^2  ->  CIDEr_1 = L^2 / (2L * L sqrt 2) = 1 / (2 sqrt 2)
                  (unclipped it would be 2L^2, twice as much: the "D" in CIDEr-D)
        bigrams   "a cat", "cat cat" vs "a red", "red cat": nothing shared -> 0; tri-grams too; no 4-grams
        lengths   3 and 3 -> no penalty.        score = 10 * (1 / (2 sqrt 2)) / 4
    Image 2: "a dog" against "a dog": CIDEr_1 = CIDEr_2 = 1 (L cancels), no 3- or 4-grams.
                                                score = 10 * 2 / 4 = 5
    Image 3: "a bird flies high" against "a bird".
        unigrams  hyp: a 0, bird L, flies L, high L (|g| = L sqrt 3); ref: a 0, bird L (|g| = L)
                  dot L^2 -> 1 / sqrt 3
        bigrams   hyp: a bird, bird flies, flies high (|g| = L sqrt 3); ref: a bird (|g| = L) -> 1 / sqrt 3
        lengths   4 and 2 -> penalty exp(-(4 - 2)^2 / (2 * 6^2)) = exp(-1/18)
                                                score = 10 * 2 * exp(-1/18) / sqrt 3 / 4
    CIDEr-D = the mean of the three.
    """
    hyps = ["A cat, cat!", "a dog", "A bird flies high."]  # case and punctuation do not count
    refs = [["A red cat."], ["A dog."], ["A bird."]]
    s1 = 10 * (1 / (2 * math.sqrt(2))) / 4  # 0.883883
    s2 = 10 * 2 / 4  # 5.0
    s3 = 10 * 2 * math.exp(-1 / 18) / math.sqrt(3) / 4  # 2.730750
    assert cider_d(hyps, refs) == pytest.approx((s1 + s2 + s3) / 3, abs=1e-9)  # 2.871544
    assert cider_d(hyps, refs) == pytest.approx(2.871544, abs=1e-6)


def test_cider_d_averages_over_references_and_rewards_consensus():
    refs = [["a man riding a horse", "a person on a horse"], ["a bowl of fruit", "fruit in a bowl"]]
    good, bad = ["a man riding a horse", "a bowl of fruit"], ["a bowl of fruit", "a man riding a horse"]
    assert cider_d(good, refs) > 1.0 > cider_d(bad, refs) >= 0.0
    with pytest.raises(ConfigError, match="at least two images"):
        cider_d(["a cat"], [["a cat"]])


def test_bleu4_is_sacrebleu_corpus_bleu_over_all_references():
    hyps = ["a small red cat sits on the mat", "a dog runs in the park today", "the sun"]
    refs = [["a red cat sits on the mat", "the small cat is on a mat"], ["a dog runs in a park"], ["the sun!", "a sun"]]
    streams = [[r[0] for r in refs], [r[1] if len(r) > 1 else None for r in refs]]
    streams = [[normalize(x) if x is not None else None for x in s] for s in streams]
    want = sacrebleu.corpus_bleu([normalize(h) for h in hyps], streams).score
    assert bleu4(hyps, refs) == pytest.approx(want) and want > 0
    # with only each first reference it is a different (lower) number: all references count
    assert bleu4(hyps, [r[:1] for r in refs]) < bleu4(hyps, refs)
    assert caption_metrics(hyps, refs)["images"] == 3


def test_normalize_lowercases_and_drops_punctuation():
    assert normalize("Tux—the Linux mascot!  It's") == "tux the linux mascot it s"
    assert normalize("a t - shirt") == normalize("A t-shirt.") == "a t shirt"


def test_bad_metric_input_is_one_line():
    with pytest.raises(ConfigError, match="2 captions for 1 images"):
        bleu4(["a", "b"], [["a"]])
    with pytest.raises(ConfigError, match="list of one or more reference"):
        bleu4(["a"], ["a cat"])


def test_nearest_neighbour_takes_the_caption_of_the_most_cosine_similar_training_image():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    queries = torch.tensor([[10.0, 0.5], [0.1, 3.0], [2.0, 2.1]])  # the scale does not matter: cosine
    assert nearest_neighbour_captions(queries, keys, ["east", "north", "north-east"]) == ["east", "north", "north-east"]
    with pytest.raises(ConfigError):
        nearest_neighbour_captions(queries, keys, ["east"])
