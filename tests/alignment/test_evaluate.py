"""The pipeline table's measures on tiny models and hand-made texts."""

import math

import pytest
import torch
from tiny_models import tiny_gpt

from genlab.alignment import evaluate as E
from genlab.alignment.sft import collate, sft_loss
from genlab.tokenizers.char import CharTokenizer
from genlab.tokenizers.chat import PLAIN_TEMPLATE, render_ids

TOK = CharTokenizer.train("".join(chr(i) for i in range(32, 126)) + "\n")  # 95 ids, as tiny_gpt
CONVOS = [
    {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]},
]
ROWS = [{"prompt": "What is 2+2?", "answer": "4", "check": "integer"}, {"prompt": "Symbol of iron?", "answer": "Fe"}]


def test_answer_perplexity_is_exp_of_the_sft_loss():
    model = tiny_gpt(0).eval()
    ids, mask = render_ids(PLAIN_TEMPLATE, TOK, CONVOS[0]["messages"])
    with torch.no_grad():
        want = math.exp(float(sft_loss(model, collate([(ids, mask)], 64))))
    assert E.answer_perplexity(model, TOK, PLAIN_TEMPLATE, CONVOS[:1], 64) == pytest.approx(want, rel=1e-5)


def test_kl_is_zero_against_itself_and_positive_against_another_model():
    a, b = tiny_gpt(0), tiny_gpt(1)
    replies = ["4", "Blue."]
    assert E.kl_per_answer(a, a, TOK, PLAIN_TEMPLATE, ROWS, replies) == pytest.approx(0.0, abs=1e-6)
    assert E.kl_per_answer(a, b, TOK, PLAIN_TEMPLATE, ROWS, replies) > 0


def test_answers_are_clean_replies_one_group_per_prompt():
    out = E.answers(tiny_gpt(0), TOK, PLAIN_TEMPLATE, ROWS, max_new_tokens=5, temperature=1.0, n=3, seed=0)
    assert [len(g) for g in out] == [3, 3] and all("User:" not in x for g in out for x in g)


def test_checker_rates_win_rate_and_diversity_by_hand():
    rates = E.checker_rates(ROWS, ["It is 4.", "I don't know."])
    assert rates == {"accuracy": 0.5, "confident_wrong": 0.0, "abstention": 0.5}
    assert E.checker_rates(ROWS, ["5", "Cu"])["confident_wrong"] == 1.0
    assert E.win_rate([1.0, 0.0, -1.0], [0.0, 0.0, 1.0]) == pytest.approx(1.5 / 3)
    assert E.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert E.self_bleu([["the cat sat on the mat", "the cat sat on the mat"]]) == pytest.approx(100.0)
    assert E.self_bleu([["the cat sat on the mat", "dogs run far away quickly now"]]) < 10


def test_reward_scores_read_each_reply():
    from genlab.models.heads import ScoreModel

    torch.manual_seed(0)
    scorer = ScoreModel(tiny_gpt(0))
    scores = E.reward_scores(scorer, TOK, PLAIN_TEMPLATE, ROWS, ["4", "Fe"])
    by_pair = E.pairwise_accuracy_by_source(scorer, TOK, PLAIN_TEMPLATE, [
        {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "source": "checker:x"}])  # fmt: skip
    assert len(scores) == 2 and by_pair["checker:x"]["pairs"] == 1
