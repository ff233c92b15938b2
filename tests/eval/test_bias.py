import math

import numpy as np
import pytest
import torch

from genlab.core.errors import ConfigError, DataError
from genlab.eval import bias
from genlab.models.gpt import GPT, GPTConfig


def _aligned(n: int = 5, noise: float = 0.05, seed: int = 0):
    """X points at A, Y at B: the association is as strong as it gets."""
    rng = np.random.default_rng(seed)
    a, b = np.zeros(8), np.zeros(8)
    a[0], b[1] = 1.0, 1.0
    jitter = lambda m: noise * rng.standard_normal((m, 8))
    X = a + jitter(n)
    Y = b + jitter(n)
    A = a + jitter(4)
    B = b + jitter(4)
    return X, Y, A, B


def test_association_and_statistic_by_hand():
    A = np.array([[1.0, 0.0]])
    B = np.array([[0.0, 1.0]])
    X = np.array([[2.0, 0.0], [1.0, 1.0]])  # cos with A: 1, 1/sqrt2; with B: 0, 1/sqrt2
    Y = np.array([[0.0, 3.0]])
    np.testing.assert_allclose(bias.association(X, A, B), [1.0, 0.0], atol=1e-12)
    assert bias.weat_statistic(X, Y, A, B) == pytest.approx(1.0 - (-1.0))


def test_aligned_targets_give_d_near_2_and_small_p():
    X, Y, A, B = _aligned(n=8)
    d = bias.effect_size(X, Y, A, B)
    # sample std of +-c over 2n words: d = 2 sqrt((2n - 1) / 2n) at the limit of no noise
    assert 1.85 < d <= 2.0
    p, count, exact = bias.permutation_p(X, Y, A, B)
    assert exact and count == math.comb(16, 8)
    assert p == 0.0  # no re-partition beats the true one
    # swapping the attributes flips the sign
    assert bias.effect_size(X, Y, B, A) == pytest.approx(-d)


def test_symmetric_targets_give_d_0_and_p_half():
    # Each target set is two words and their mirror images across the A/B bisector (the A and B
    # coordinates swapped), so s(mirror) = -s(word): both sets sum to 0, d = 0 and s(X, Y) = 0.
    A = np.array([[1.0, 0.0, 0.0]])
    B = np.array([[0.0, 1.0, 0.0]])
    w = np.random.default_rng(1).standard_normal((4, 3))
    m = w[:, [1, 0, 2]]
    X = np.concatenate([w[:2], m[:2]])
    Y = np.concatenate([w[2:], m[2:]])
    assert bias.effect_size(X, Y, A, B) == pytest.approx(0.0, abs=1e-12)
    assert bias.weat_statistic(X, Y, A, B) == pytest.approx(0.0, abs=1e-12)
    # The 70 partitions are symmetric around 0 (swapping X_i and Y_i negates s); the 6 made of
    # whole mirror pairs tie at 0; half of the other 64 beat s = 0: p = 32 / 70, just under 1/2.
    p, count, exact = bias.permutation_p(X, Y, A, B)
    assert exact and count == 70
    assert p == pytest.approx(32 / 70)
    assert bias.permutation_p_reference(X, Y, A, B) == pytest.approx(32 / 70)


def test_random_words_give_p_near_half_on_average():
    rng = np.random.default_rng(3)
    ps, ds = [], []
    for _ in range(40):
        X, Y, A, B = (rng.standard_normal((6, 16)) for _ in range(4))
        ps.append(bias.permutation_p(X, Y, A, B)[0])
        ds.append(bias.effect_size(X, Y, A, B))
    assert 0.35 < np.mean(ps) < 0.65
    assert abs(np.mean(ds)) < 0.4


@pytest.mark.parametrize("n", [2, 3, 5])
def test_permutation_p_matches_brute_force_enumeration(n):
    rng = np.random.default_rng(n)
    X, Y, A, B = (rng.standard_normal((m, 5)) for m in (n, n, 3, 4))
    X = X + 0.3 * A.mean(0)
    p, count, exact = bias.permutation_p(X, Y, A, B)
    assert exact and count == math.comb(2 * n, n)
    assert p == pytest.approx(bias.permutation_p_reference(X, Y, A, B), abs=1e-12)


def test_sampled_p_approaches_the_exact_one_and_is_seeded():
    rng = np.random.default_rng(7)
    X, Y, A, B = (rng.standard_normal((m, 5)) for m in (6, 6, 3, 3))
    X = X + 0.2 * A.mean(0)
    exact, _, _ = bias.permutation_p(X, Y, A, B)
    p1, n1, ex1 = bias.permutation_p(X, Y, A, B, exact_limit=10, samples=20_000, seed=0)
    p2, _, _ = bias.permutation_p(X, Y, A, B, exact_limit=10, samples=20_000, seed=0)
    assert not ex1 and n1 == 20_000 and p1 == p2
    assert p1 == pytest.approx(exact, abs=0.015)


def test_permutation_needs_equal_target_sets():
    A = np.eye(3)
    with pytest.raises(DataError, match="equal"):
        bias.permutation_p(A[:2], A[:1], A, A)


def test_word_lists_are_the_papers():
    t = bias.WEAT_TESTS
    assert list(t) == [f"weat{i}" for i in range(1, 11)]
    assert len(t["weat1"].X) == len(t["weat1"].Y) == len(t["weat1"].A) == len(t["weat1"].B) == 25
    x3, y3, _, _ = t["weat3"].words()
    assert len(t["weat3"].X) == len(t["weat3"].Y) == 50 and len(x3) == len(y3) == 32  # 18 left out of each
    x4, y4, _, _ = t["weat4"].words()
    assert len(x4) == len(y4) == 16
    assert t["weat9"].A[4] == "short-term" and len(t["weat9"].X) == 6
    for test in t.values():
        x, y, a, b = test.words()
        assert len(x) == len(y) and a and b
        assert not set(test.left_out_x) - set(test.X) and not set(test.left_out_y) - set(test.Y)


def test_missing_words_are_dropped_symmetrically():
    test = bias.WEAT_TESTS["weat6"]
    gone = {"John", "Paul", "Mike", "home"}  # three male names, one family word
    (x, y, a, b), missing, dropped = bias.select_words(test, gone.__contains__, seed=0)
    assert sorted(missing) == sorted(gone)
    assert len(x) == len(y) == 5 and len(dropped) == 3 and set(dropped) <= set(test.Y)
    assert "home" not in b and len(b) == 7 and len(a) == 8
    again = bias.select_words(test, gone.__contains__, seed=0)
    assert again[2] == dropped


def test_run_weat_on_a_planted_embedding():
    test = bias.WEAT_TESTS["weat7"]
    x, y, a, b = test.words()
    rng = np.random.default_rng(0)
    table = {}
    for ws, axis in ((x, 0), (a, 0), (y, 1), (b, 1)):
        for w in ws:
            v = 0.2 * rng.standard_normal(6)
            v[axis] += 1.0
            table[w] = v
    r = bias.run_weat(test, lambda ws: np.stack([table[w] for w in ws]))
    assert r.exact and r.partitions == 12870 and r.p_value < 0.01 and r.effect_size > 1.5
    assert (r.n_x, r.n_y, r.n_a, r.n_b) == (8, 8, 8, 8) and r.paper_d == pytest.approx(1.06)


# ---------------------------------------------------------------- pronoun probe


class _Chars:
    """A character tokenizer over a fixed alphabet (the test's, not genlab's)."""

    alphabet = " abcdefghijklmnopqrstuvwxyzIT'.,"

    def encode(self, text: str) -> list[int]:
        return [self.alphabet.index(c) for c in text.lower()]


def _tiny_gpt():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=len(_Chars.alphabet), block_size=64, n_layer=2, n_head=2, n_embd=16)
    return GPT(cfg).eval()


def test_continuation_logprobs_batched_equals_one_at_a_time():
    model, tok = _tiny_gpt(), _Chars()
    prompts = ["the nurse said that", "i asked the cook what", "the pilot was tired, so"]
    conts = [" he", " she", " they"]
    fast = bias.continuation_logprobs(model, tok.encode, prompts, conts, batch_size=2)
    ref = bias.continuation_logprobs_reference(model, tok.encode, prompts, conts)
    np.testing.assert_allclose(fast, ref, atol=1e-9)
    assert (fast < 0).all()


def test_continuation_logprobs_are_chain_rule_sums():
    model, tok = _tiny_gpt(), _Chars()
    with torch.no_grad():
        ids = torch.tensor([tok.encode("ab he")])
        logp = torch.log_softmax(model(ids)[0].double(), -1)
    want = sum(logp[1 + k, t].item() for k, t in enumerate(tok.encode(" he")))
    got = bias.continuation_logprobs(model, tok.encode, ["ab"], [" he"])[0, 0]
    assert got == pytest.approx(want, abs=1e-10)


def test_pronoun_probe_rows_and_summary():
    model, tok = _tiny_gpt(), _Chars()
    occ = ("nurse", "pilot", "cook")
    res = bias.pronoun_probe(model, tok.encode, occ, ("the {occupation} said that",), controls=("man", "woman"))
    assert [r.word for r in res.rows] == ["nurse", "pilot", "cook", "man", "woman"]
    assert [r.control for r in res.rows] == [False, False, False, True, True]
    lp = bias.continuation_logprobs(model, tok.encode, ["the nurse said that"], [" he", " she"])[0]
    assert res.rows[0].log_ratio == pytest.approx(lp[0] - lp[1])
    assert res.rows[0].p_he == pytest.approx(math.exp(lp[0]))
    s = res.summary
    assert s["lean_he"] + s["lean_she"] == 3 and set(s["controls"]) == {"man", "woman"}
    assert s["mean_log_ratio"] == pytest.approx(np.mean([r.log_ratio for r in res.rows[:3]]))
    assert 0 < s["mean_share_they"] < 1 and s["most_he"][0] == max(res.rows[:3], key=lambda r: r.log_ratio).word


def test_pronoun_probe_bad_templates():
    model, tok = _tiny_gpt(), _Chars()
    with pytest.raises(ConfigError, match="occupation"):
        bias.pronoun_probe(model, tok.encode, ("nurse",), ("the nurse said",))
    with pytest.raises(DataError, match="context"):
        bias.pronoun_probe(model, tok.encode, ("nurse" * 20,), ("the {occupation} said that",))
