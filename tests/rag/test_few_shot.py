"""Few-shot closed-book prompting: the exemplar turns, the seeded draw from non-test questions, the fit
to a context, and the same conversation through a genlab chat run and an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import tiny_recipe

from genlab.core.errors import ConfigError, DataError
from genlab.rag.answer import CLOSED_BOOK_PROMPT, OpenAIChat, RunChat, closed_book, closed_book_messages, fit_shots
from genlab.rag.trust import FewShot, Question, in_answer_form, is_correct, shot_pool
from genlab.recipes import run_task

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
ELEMENTS = Path("/usr/share/dictd/elements.index")
FAQ_DIR = Path("/usr/share/doc/python3-doc/html/_sources/faq")


def element(name: str, field: str, answer: str, check: str, split: str) -> Question:
    prompt = f"What is the {field} of {name}?"
    row = {"prompt": prompt, "answer": answer, "check": check, "item": name.lower()}
    return Question(prompt, answer, "elements", "templated", split, "", row)


def faq(prompt: str, gold: str, split: str) -> Question:
    return Question(prompt, gold, "python-faq", "real", split, gold)


POOL = [
    element("Chlorine", "atomic number", "17", "integer", "validation"),
    element("Gallium", "chemical symbol", "Ga", "exact", "validation"),
    element("Osmium", "atomic weight", "190.2", "number", "validation"),
    element("Iridium", "atomic number", "77", "integer", "validation"),
    element("Iron", "atomic number", "26", "integer", "validation"),
    faq("What is Python?", "Python is an interpreted,\n  object-oriented language.", "train"),
    faq("Why is Python slow?", "It is interpreted.", "train"),
    faq("How do I copy a list?", "Use list(x) or x[:].", "train"),
]
Q_IRON = element("Iron", "atomic number", "26", "integer", "test")
Q_FAQ = faq("How do I sort a dict?", "Use sorted(d.items()).", "test")


class Recorder:
    """A generator that records every conversation it is sent; with ``budget``, characters count."""

    def __init__(self, reply: str = "26", budget: int | None = None) -> None:
        self.reply, self.seen = reply, []
        if budget is not None:
            self.budget = budget
            self.count = lambda messages: sum(len(m["content"]) for m in messages)

    def complete(self, messages):
        self.seen.append(messages)
        return self.reply


def test_k_shot_prompt_is_k_user_assistant_pairs_before_the_question():
    shots = [("What is the atomic number of Neon?", "10"), ("What is the chemical symbol of Gold?", "Au")]
    m = closed_book_messages("What is the atomic number of Iron? ", shots)
    assert [x["role"] for x in m] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert m[0]["content"] == CLOSED_BOOK_PROMPT
    assert [(m[1]["content"], m[2]["content"]), (m[3]["content"], m[4]["content"])] == shots
    assert m[-1]["content"] == "What is the atomic number of Iron?"
    # k = 0 is exactly the zero-shot prompt as it was
    zero = [{"role": "system", "content": CLOSED_BOOK_PROMPT}, {"role": "user", "content": "What is Python?"}]
    assert closed_book_messages("What is Python?") == zero == closed_book_messages("What is Python?", [])
    with pytest.raises(ConfigError, match="few-shot exemplar 1 must be a .question, answer. pair") as e:
        closed_book_messages("q?", [("a?", "b"), ("only a question",)])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="exemplar 0"):
        closed_book_messages("q?", [("a?", "  ")])


def test_exemplars_are_seeded_per_source_and_never_the_question():
    four = FewShot(POOL, 4, seed=0)
    shots = four(Q_IRON)
    assert len(shots) == 4 and all(q != Q_IRON.prompt for q, _ in shots)  # Iron's own question is skipped
    element_prompts = {q.prompt: q.gold for q in POOL if q.source == "elements"}
    assert all(element_prompts[q] == a for q, a in shots)  # element questions get element exemplars, gold answers
    assert FewShot(POOL, 4, seed=0)(Q_IRON) == shots  # the same seed, the same exemplars
    assert FewShot(list(reversed(POOL)), 4, seed=0)(Q_IRON) == shots  # whatever order the pool came in
    assert FewShot(POOL, 1, seed=0)(Q_IRON) == shots[:1]  # k = 1 is the first of the k = 4 ones
    assert {tuple(FewShot(POOL, 4, seed=s)(Q_IRON)) for s in range(6)} != {tuple(shots)}  # the seed matters
    faq_shots = FewShot(POOL, 2, seed=0)(Q_FAQ)
    assert {q for q, _ in faq_shots} <= {q.prompt for q in POOL if q.source == "python-faq"}
    # gold answers in the short form is_correct accepts: the FAQ sentence with its whitespace collapsed
    golds = {q.prompt: q for q in POOL}
    assert all(is_correct(golds[q], a) and "\n" not in a for q, a in faq_shots + shots)
    assert FewShot(POOL, 0)(Q_IRON) == []


def test_exemplars_never_come_from_the_test_split():
    with pytest.raises(DataError, match="must not come from the test split: 1 do"):
        FewShot([*POOL, Q_FAQ], 1)
    with pytest.raises(DataError, match="3 few-shot exemplars of python-faq in the pool, 4 asked"):
        FewShot(POOL, 4)(Q_FAQ)
    with pytest.raises(ConfigError, match=">= 0"):
        FewShot(POOL, -1)
    with pytest.raises(ConfigError, match="never come from the test split"):
        shot_pool("test")
    with pytest.raises(ConfigError, match="never come from the test split"):
        shot_pool("train", ("validation", "test"))


@pytest.mark.skipif(not (ELEMENTS.is_file() and FAQ_DIR.is_dir()), reason="needs dict-elements and python3-doc")
def test_the_real_pool_is_faq_train_and_validation_elements():
    from genlab.rag.trust import held_out_questions

    pool = shot_pool()
    assert {(q.source, q.split) for q in pool} == {("python-faq", "train"), ("elements", "validation")}
    test = held_out_questions("test", ("train", "test"))  # the benchmark's test questions
    asked = {q.prompt for q in test}
    pick = FewShot(pool, 4, seed=0)
    for q in [next(q for q in test if q.source == s) for s in ("python-faq", "elements")]:
        shots = pick(q)
        assert len(shots) == 4 and not {p for p, _ in shots} & asked


def test_in_answer_form():
    number = element("Iron", "atomic number", "26", "integer", "test")
    weight = element("Iron", "atomic weight", "55.845", "number", "test")
    symbol = element("Iron", "chemical symbol", "Fe", "exact", "test")
    assert in_answer_form(number, "26") and in_answer_form(number, " 27.\nmore") and not in_answer_form(number, "the")
    assert in_answer_form(weight, "55.8") and not in_answer_form(weight, "It weighs 55.8.")
    assert in_answer_form(symbol, "Fe") and in_answer_form(symbol, "Xyz.") and not in_answer_form(symbol, "iron")
    assert not in_answer_form(symbol, "") and in_answer_form(Q_FAQ, "anything") is None


def test_closed_book_sends_the_shots_and_fits_them_oldest_first():
    shots = [("What is the atomic number of Neon?", "10"), ("What is the atomic number of Argon?", "18"),
             ("What is the atomic number of Krypton?", "36")]  # fmt: skip
    gen = Recorder()
    a = closed_book(Q_IRON.prompt, gen, shots)
    assert gen.seen[-1] == closed_book_messages(Q_IRON.prompt, shots) and a.text == "26" and a.shots_dropped == 0
    full = sum(len(m["content"]) for m in closed_book_messages(Q_IRON.prompt, shots))
    small = Recorder(budget=full - 1)  # one character short: the oldest exemplar goes
    a = closed_book(Q_IRON.prompt, small, shots)
    assert a.shots_dropped == 1 and small.seen[-1] == closed_book_messages(Q_IRON.prompt, shots[1:])
    tiny = Recorder(budget=1)  # not even the question fits: every exemplar goes, the generator decides
    assert closed_book(Q_IRON.prompt, tiny, shots).shots_dropped == 3
    assert tiny.seen[-1] == closed_book_messages(Q_IRON.prompt)
    assert fit_shots("q?", shots) == (closed_book_messages("q?", shots), 0)  # no budget: nothing to fit


@pytest.fixture(scope="module")
def small_chat_run(tmp_path_factory) -> Path:
    """A gpt-micro BPE run with a 256-token context (two steps) and a chat template."""
    root = tmp_path_factory.mktemp("few_shot_chat")
    recipe = tiny_recipe(FIXTURE, max_steps=2, eval_interval=2)
    recipe["model"].update(block_size=256)
    recipe["data"].update(tokenizer="bpe", vocab_size=300)
    run_task(recipe, run_dir=root / "chat")
    template = {"system": "S: {content}\n", "user": "U: {content}\n", "assistant": "A: {content}\n",
                "generation": "A:", "stop": ["\nU:"]}  # fmt: skip
    (root / "chat" / "chat_template.json").write_text(json.dumps(template))
    return root / "chat"


def test_run_chat_drops_exemplars_that_do_not_fit_and_errors_on_a_question_that_does_not(small_chat_run):
    llm = RunChat(small_chat_run, max_new_tokens=8)
    shots = [(f"What is the atomic number of element {i}?", str(i)) for i in range(12)]
    messages, dropped = fit_shots(Q_IRON.prompt, shots, llm.count, llm.budget)
    assert 0 < dropped < len(shots) and llm.count(messages) <= llm.budget < llm.count(closed_book_messages(
        Q_IRON.prompt, shots[dropped - 1 :]))  # fmt: skip
    assert messages == closed_book_messages(Q_IRON.prompt, shots[dropped:])  # the newest kept, the oldest gone
    a = closed_book(Q_IRON.prompt, llm, shots)
    assert a.shots_dropped == dropped and isinstance(a.text, str)
    with pytest.raises(ConfigError, match="more than the 248 the model's context") as e:
        closed_book("why " * 400, llm, shots)
    assert "\n" not in str(e.value)


def test_reply_logprob_is_the_sum_of_the_next_token_log_probabilities(small_chat_run):
    import torch

    from genlab.models.outputs import logits_of
    from genlab.tokenizers.chat import prompt_ids, reply_ids

    llm = RunChat(small_chat_run, max_new_tokens=8)
    messages = closed_book_messages(Q_IRON.prompt, [("What is the atomic number of Neon?", "10")])
    lp, n = llm.reply_logprob(messages, "26")
    prompt, target = prompt_ids(llm.template, llm.tokenizer, messages), reply_ids(llm.template, llm.tokenizer, "26")
    assert n == len(target) > 0 and lp < 0
    ref, ids = 0.0, list(prompt)  # the reference: one forward per reply token, its last position only
    with torch.no_grad():
        for t in target:
            logits = logits_of(llm.model(torch.tensor([ids])))[0, -1]
            ref += float(torch.log_softmax(logits.float(), -1)[t])
            ids.append(t)
    assert lp == pytest.approx(ref, abs=1e-4)
    with pytest.raises(ConfigError, match="more than the context .256."):
        llm.reply_logprob(messages, "26 " * 300)


class _Endpoint(BaseHTTPRequestHandler):
    """A chat-completions endpoint that records the conversations it is sent and answers 26."""

    bodies: list = []

    def do_POST(self):
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "26"}}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_endpoint_gets_the_shots_as_chat_turns():
    _Endpoint.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        llm = OpenAIChat(f"http://127.0.0.1:{server.server_address[1]}", timeout=10)
        shots = FewShot(POOL, 2, seed=3)(Q_IRON)
        a = closed_book(Q_IRON.prompt, llm, shots)
        sent = _Endpoint.bodies[-1]["messages"]
        assert sent == closed_book_messages(Q_IRON.prompt, shots) and len(sent) == 6
        assert [(sent[1]["content"], sent[2]["content"]), (sent[3]["content"], sent[4]["content"])] == shots
        assert a.text == "26" and is_correct(Q_IRON, a.text) and a.shots_dropped == 0
        fitted = OpenAIChat(llm.url, timeout=10, max_prompt_chars=OpenAIChat.count(sent) - 1)
        assert closed_book(Q_IRON.prompt, fitted, shots).shots_dropped == 1  # the character budget fits them too
        assert _Endpoint.bodies[-1]["messages"] == closed_book_messages(Q_IRON.prompt, shots[1:])
    finally:
        server.shutdown()
        server.server_close()
