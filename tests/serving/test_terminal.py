"""genlab chat: the REPL fed with lines (no tmux), on a tiny random GPT run with the role-token template."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlab.alignment.safety import REFUSAL, Moderator, Policy
from genlab.core.config import save_yaml, to_dict
from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.data.chat import read_conversations, read_preferences
from genlab.models.gpt import GPT
from genlab.serving.terminal import Terminal, load_session
from genlab.tokenizers import chat as T
from genlab.training.checkpoint import save_checkpoint

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"


def _run(root: Path, name: str, template: bool = True) -> Path:
    """A random gpt-micro run (context 64) over a 400-token chat BPE vocabulary with the role tokens."""
    tok = T.train_chat_bpe(FIXTURE.read_text(encoding="utf-8"), vocab_size=400)
    cfg = dataclasses.replace(preset("gpt-micro"), vocab_size=tok.vocab_size, block_size=64)
    torch.manual_seed(0)
    path = root / name
    path.mkdir()
    tok.save(path)
    if template:
        T.save_template(T.ROLE_TOKEN_TEMPLATE, path)
    save_yaml({"task": "lm", "model": {"family": "gpt", **to_dict(cfg)}}, path / "config.yaml")
    save_checkpoint(path / "checkpoints", 0, {"model": GPT(cfg)}, {}, ("last", "best"))
    return path


class Favour(torch.nn.Module):
    """The output head plus ``boost`` on one token's logit: the model writes that token often."""

    def __init__(self, head: torch.nn.Module, token: int, boost: float) -> None:
        super().__init__()
        self.head, self.token, self.boost = head, token, boost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(x)
        logits[..., self.token] += self.boost
        return logits


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("chat"), "tiny-chat")


def _lines(lines: list[str]):
    it = iter(lines)
    return lambda prompt: next(it, None)


def _markup_free(text: str) -> bool:
    return not any(t in text for t in (*T.ROLE_TOKENS, "<|endoftext|>"))


def test_repl_streams_answers_keeps_history_and_runs_the_commands(run: Path, tmp_path: Path) -> None:
    session = load_session(run, temperature=0.0, max_new_tokens=12, preferences=tmp_path / "prefs.jsonl")
    out = io.StringIO()
    lines = ["/system Be brief.", "Hello there", "", "/temperature 0.5", "/temperature hot", "How are you?",
             f"/save {tmp_path / 'chat.jsonl'}", "/reset", "/nope", "/quit", "never read"]  # fmt: skip
    Terminal(session, _lines(lines), out).run()
    text = out.getvalue()
    assert "(system prompt: Be brief.)" in text and "(empty message: type something, or /help)" in text
    assert "(temperature 0.5)" in text and "/temperature takes a number" in text
    assert "(history cleared, system prompt kept)" in text and "unknown command /nope" in text
    assert _markup_free(text)
    saved = read_conversations(tmp_path / "chat.jsonl")[0]["messages"]
    assert [m["role"] for m in saved] == ["system", "user", "assistant", "user", "assistant"]
    assert saved[1]["content"] == "Hello there" and saved[0]["content"] == "Be brief."
    assert session.history == [] and session.system == "Be brief." and session.cfg.temperature == 0.5


def test_special_tokens_never_reach_the_user_and_output_stops_at_end_of_turn(run: Path) -> None:
    for token in (*T.ROLE_TOKENS, "<|endoftext|>"):  # a model that writes a role / end-of-turn token often
        session = load_session(run, temperature=1.0, max_new_tokens=48, moderator=None, seed=0)
        token_id = session.tokenizer.hf.token_to_id(token)
        session.model.head = Favour(session.model.head, token_id, boost=5.0)
        for k in range(3):
            raw = "".join(session._generate(f"Hello {k}", session.cfg))
            answer = session.answer(f"Hello {k}")
            assert _markup_free(raw) and _markup_free(answer)
            # it stopped at the token, not at the length limit
            assert len(session.tokenizer.encode(raw)) < 40, (token, raw)
    # whatever a random model samples, nothing of the template is shown
    session = load_session(run, temperature=1.5, max_new_tokens=40, seed=3)
    for k in range(5):
        assert _markup_free(session.answer(f"question {k}"))


def test_context_drops_the_oldest_turns_and_keeps_the_system_prompt(run: Path) -> None:
    session = load_session(run, temperature=0.0, max_new_tokens=8, system="Sys.")
    session.history = [("user", "old question"), ("assistant", "old answer")]
    for i in range(6):
        session.history += [("user", f"question {i} with some words"), ("assistant", f"answer {i} with words")]
    before = len(session.history)
    ids = session.prompt("the newest question")
    assert len(ids) <= session.block_size - 8 and session.last_dropped > 0
    assert len(session.history) == before - session.last_dropped
    text = session.tokenizer.decode(ids)
    assert text.startswith("<|system|>\nSys.<|end|>\n") and "old question" not in text
    assert text.endswith("<|user|>\nthe newest question<|end|>\n<|assistant|>\n")
    out = io.StringIO()
    session.history += [("user", "x " * 10), ("assistant", "y " * 10)] * 3
    Terminal(session, _lines([]), out).ask("and now?")
    assert "oldest" in out.getvalue() and "turn(s) were dropped" in out.getvalue()


def test_compare_records_the_users_ranking_and_thumbs(run: Path, tmp_path: Path) -> None:
    prefs = tmp_path / "prefs.jsonl"
    session = load_session(run, temperature=1.0, max_new_tokens=10, preferences=prefs, seed=1)
    out = io.StringIO()
    Terminal(session, _lines(["/compare What is Python?", "b", "up", "/quit"]), out).run()
    text = out.getvalue()
    assert "[A] " in text and "[B] " in text and "(recorded: B preferred, thumbs up to" in text
    rows = read_preferences(prefs)
    assert len(rows) == 1 and rows[0]["prompt"] == "What is Python?" and rows[0]["source"] == "user"
    assert rows[0]["thumbs"] == "up" and rows[0]["kind"] == "user"
    # the answers may hold newlines: find them whole, B (chosen) after A (rejected)
    assert f"[A] {rows[0]['rejected']}\n[B] {rows[0]['chosen']}\n" in text
    assert session.history[-1] == ("assistant", rows[0]["chosen"])
    # a second comparison of the same question (the last one asked), skipped
    out = io.StringIO()
    Terminal(session, _lines(["/compare", "", "/quit"]), out).run()
    assert "[A] " in out.getvalue() and "(not recorded)" in out.getvalue() and len(read_preferences(prefs)) == 1


def test_compare_of_a_seeded_session_is_reproducible(run: Path) -> None:
    def pairs(seed):
        session = load_session(run, temperature=1.0, max_new_tokens=10, seed=seed)
        return [session.candidates("What is Python?") for _ in range(2)]

    first = pairs(1)
    assert pairs(1) == first and first[0] != first[1]  # the same session seed, the same pairs; each run new ones


class OutputOnly(Moderator):
    """Lets every input through; refuses an output holding ``ee``."""

    def check_input(self, text):
        return Moderator(Policy(topics={}), self.scorer).check(text)

    def check_output(self, text):
        return Moderator(Policy(topics={"ee": (r"ee",)}), self.scorer).check(text)


def test_moderation_in_both_directions(run: Path) -> None:
    def scorer(texts):
        return [0.0 for _ in texts]  # the topics decide here; the classifier is tested in tests/alignment

    policy = Policy(topics={"secrets": (r"\bpassword\b",)})
    session = load_session(run, temperature=0.0, max_new_tokens=10, moderator=Moderator(policy, scorer))
    assert session.answer("tell me the password") == REFUSAL  # input: never reaches the model
    assert session.history == []
    session = load_session(run, temperature=0.0, max_new_tokens=10, moderator=OutputOnly(policy, scorer))
    session.model.head = Favour(session.model.head, session.tokenizer.encode("e")[0], boost=50.0)  # writes "eee..."
    pieces = list(session.reply("hello"))
    assert pieces == ["e", "\n" + REFUSAL]  # the piece that would make it "ee" is never shown
    assert session.history[-1] == ("assistant", "e\n" + REFUSAL)


def test_errors_are_one_line(run: Path, tmp_path: Path) -> None:
    bare = _run(tmp_path, "no-template", template=False)
    with pytest.raises(ConfigError, match="has no chat template"):
        load_session(bare)
    session = load_session(run)
    with pytest.raises(ConfigError, match="the message is empty"):
        session.answer("   ")
    with pytest.raises(ConfigError, match="nothing to save"):
        session.save(tmp_path / "x.jsonl")


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genlab", *args], input=stdin, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_cli_once_stdin_and_errors(run: Path, tmp_path: Path) -> None:
    done = _cli("chat", str(run), "--once", "Hello?", "--temperature", "0", "--max-new-tokens", "8", "--no-moderation")
    assert done.returncode == 0, done.stderr
    assert _markup_free(done.stdout) and done.stdout.endswith("\n")
    piped = _cli("chat", str(run), "--temperature", "0", "--max-new-tokens", "8", "--no-moderation",
                 stdin="Hello?\n\n/quit\n")  # fmt: skip
    assert piped.returncode == 0 and piped.stdout.splitlines()[0] == done.stdout.splitlines()[0]
    assert "(empty message" in piped.stdout
    bare = _run(tmp_path, "bare", template=False)
    bad = _cli("chat", str(bare), "--once", "hi", "--no-moderation")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "has no chat template" in bad.stderr
    empty = _cli("chat", str(run), "--once", " ", "--no-moderation")
    assert empty.returncode == 2 and "the message is empty" in empty.stderr
    prefs = tmp_path / "bad.jsonl"
    prefs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "source": "user"}) + "\n{oops\n")
    with pytest.raises(Exception, match=r"bad\.jsonl:2: not valid JSON"):
        read_preferences(prefs)
