"""The closed- vs open-book harness on hand-made questions, chunks and readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from genlab.core.errors import DataError
from genlab.data.chat import split_of
from genlab.rag.answer import NOT_IN_KB, Answer, Citation, answer
from genlab.rag.trust import (
    Question,
    answer_metrics,
    element_fact_questions,
    faq_questions,
    format_table,
    gold_answers,
    gold_fed,
    is_correct,
    random_passage,
    trust_table,
    tune_abstention,
)
from genlab.rag.types import Chunk, Hit

ELEMENTS = Path("/usr/share/dictd/elements.index")
IRON = Chunk(0, "elements", "elements", "iron", "", 0, "iron\nSymbol: Fe\nAtomic number: 26\nAtomic weight: 55.847")
FAQ = Chunk(1, "faq/general.rst", "python-docs", "FAQ", "What is Python?", 0,
            "Python is an interpreted, interactive, object-oriented programming language. It has modules.")  # fmt: skip
ROW = {"prompt": "What is the atomic number of Iron?", "answer": "26", "check": "integer", "item": "iron"}
Q_IRON = Question(ROW["prompt"], "26", "elements", "templated", "test", "", ROW)
Q_FAQ = Question("What is Python?", "Python is an interpreted, interactive, object-oriented programming language.",
                 "python-faq", "real", "test", FAQ.text)  # fmt: skip


class Fixed:
    def __init__(self, reply: str) -> None:
        self.reply = reply

    def complete(self, messages):
        return self.reply


def test_correctness_and_gold_passages():
    assert is_correct(Q_IRON, "It is 26.") and not is_correct(Q_IRON, "27")
    assert is_correct(Q_FAQ, "Python is an interpreted object-oriented programming language [1]")
    assert not is_correct(Q_FAQ, "A snake.")
    assert gold_fed(Q_IRON, [FAQ, IRON]) and not gold_fed(Q_IRON, [FAQ])
    assert gold_fed(Q_FAQ, [FAQ]) and not gold_fed(Q_FAQ, [IRON])


def test_trust_table_counts_right_wrong_abstained_and_grounded():
    retrieve = {Q_IRON.prompt: [Hit(IRON, 0.9, 1)], Q_FAQ.prompt: [Hit(IRON, 0.2, 1)]}
    conditions = {
        "closed-book": lambda q: Answer("27"),  # a confident wrong answer to both
        "open-book": lambda q: answer(q.prompt, retrieve[q.prompt], Fixed("Atomic number 26 [1]"), threshold=0.5),
        "abstain": lambda q: Answer(NOT_IN_KB, abstained=True),
    }
    t = trust_table([Q_IRON, Q_FAQ], conditions)
    assert t["closed-book"]["accuracy"] == 0.0 and t["closed-book"]["confident_wrong"] == 1.0
    assert t["closed-book"]["groundedness"] == 0.0 and t["closed-book"]["gold_retrieved"] is None
    ob = t["open-book"]  # iron answered right and grounded in its chunk; the FAQ question below the threshold
    assert ob["accuracy"] == 0.5 and ob["abstained"] == 0.5 and ob["confident_wrong"] == 0.0
    assert ob["groundedness"] == 1.0 and ob["gold_retrieved"] == 1.0
    assert t["abstain"]["abstained"] == 1.0 and t["abstain"]["groundedness"] is None
    assert t["by_source"]["open-book"]["elements"]["accuracy"] == 1.0
    for s in (v for k, v in t.items() if k != "by_source"):
        assert s["accuracy"] + s["confident_wrong"] + s["abstained"] == pytest.approx(1.0)
    md = format_table(t).splitlines()
    assert md[0].startswith("| condition |") and len(md) == 2 + 3
    assert "| open-book | 2 | 50.0% | 0.0% | 50.0% | 100.0% |" in md[3]


def test_tune_abstention_on_validation_questions():
    retrieve = lambda prompt: [Hit(IRON, 0.9 if "Iron" in prompt else 0.3, 1)]
    reply = lambda q, hits, t: answer(q.prompt, hits, Fixed("26 [1]"), t)
    # iron is answered right at 0.9, the FAQ question wrong at 0.3: abstain below 0.9
    assert tune_abstention([Q_IRON, Q_FAQ], retrieve, reply) == 0.9


def test_random_passage_baseline():
    draw = random_passage([IRON, FAQ], seed=1)
    got = {draw("q")[0].chunk.chunk_id for _ in range(20)}
    assert got == {0, 1}
    a = Answer("x [1]", [Citation(1, IRON)], chunks=[IRON])
    assert a.cited_texts() == [IRON.text]


def test_faq_questions_keep_one_split():
    rows = [{"prompt": f"Question {i}?", "answer": f"Answer number {i} is a long enough sentence. More.",
             "source": "python-faq", "item": f"f#{i}"} for i in range(60)]  # fmt: skip
    qs = faq_questions(rows, "test")
    assert qs and all(q.split == "test" == split_of(f"python-faq:f#{q.prompt[9:-1]}") for q in qs)
    assert qs[0].gold.endswith("long enough sentence.") and qs[0].kind == "real"


@pytest.mark.skipif(not ELEMENTS.is_file(), reason="needs Debian dict-elements")
def test_element_fact_questions():
    assert len(element_fact_questions(ELEMENTS, None)) == 309
    test = element_fact_questions(ELEMENTS, ("test",))
    assert test and all(q.split == "test" and q.kind == "templated" for q in test)


def test_answer_metrics_of_rag_eval():
    rows = [{"question": "What is the atomic number of Iron?", "answers": ["26"]},
            {"question": "What is Python?", "answer": FAQ.text}]  # fmt: skip
    assert gold_answers(rows[1]) == ["Python is an interpreted, interactive, object-oriented programming language."]
    retrieve = lambda q: [Hit(IRON, 0.9, 1)] if "Iron" in q else [Hit(FAQ, 0.1, 1)]
    reply = lambda q, hits, t: answer(q, hits, Fixed("26 [1]"), t)
    m = answer_metrics(rows, retrieve, reply, threshold=0.5)
    assert m == {"n": 2, "exact_match": 0.5, "f1": 0.5, "groundedness": 1.0, "abstained": 0.5}
    with pytest.raises(DataError, match="needs a 'question'"):
        answer_metrics([{"q": 1}], retrieve, reply)
