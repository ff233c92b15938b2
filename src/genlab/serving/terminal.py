"""``genlab chat RUN``: a terminal chat with a GPT run that has a chat template.

:class:`ChatSession` holds the conversation and talks to the model; :class:`Terminal` is the
read-eval-print loop around it (lines in, text out: tests feed it a list of lines). Each turn:

1. moderation of the user's message (:mod:`genlab.alignment.safety`): a refused one never
   reaches the model, the fixed refusal answers it;
2. context: the system prompt, the history and the new message rendered with the template
   (:func:`genlab.tokenizers.chat.fit_context`): when they outgrow the model's context less the
   room kept for the answer, the oldest turns go first and the system prompt stays;
3. decoding with genlab's engine (:func:`genlab.generation.decode.stream`), streamed piece by
   piece; it stops at the end-of-turn token, at any other template markup (a role token), or at
   end of text, so special tokens and markup never reach the user;
4. moderation of the answer as it grows: a piece that makes it refused is not shown, the
   refusal is, and the answer stops.

Commands: ``/reset`` (forget the history, keep the system prompt), ``/system TEXT`` (set it;
empty clears it), ``/temperature X``, ``/save PATH`` (the conversation as a conversations JSONL
row), ``/compare [QUESTION]`` (two sampled answers A and B; the user says which is better and
gives it a thumbs up or down, recorded to the preferences JSONL), ``/help``, ``/quit``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from genlab.alignment.safety import Moderator
from genlab.core.errors import ConfigError, GenlabError
from genlab.data.chat import append_jsonl
from genlab.generation.decode import GenerationConfig, stream
from genlab.runs import load_run
from genlab.tokenizers.chat import TEMPLATE_FILE, ChatTemplate, find_template, fit_context

PREFERENCES_FILE = "preferences.jsonl"
HELP = (
    "commands: /reset  /system TEXT  /temperature X  /save PATH  /compare [QUESTION]  /help  /quit\n"
    "anything else is a message to the model"
)


class ChatSession:
    """A conversation with one model: history, sampling settings, context fitting, moderation."""

    def __init__(
        self,
        model,
        tokenizer,
        template: ChatTemplate,
        *,
        system: str | None = None,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_new_tokens: int = 128,
        moderator: Moderator | None = None,
        preferences: str | Path | None = None,
        name: str = "",
        seed: int | None = None,
    ) -> None:
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.system = system or None
        self.history: list[tuple[str, str]] = []
        self.moderator = moderator
        self.preferences = Path(preferences) if preferences is not None else None
        self.name = name
        self.block_size = model.config.block_size
        self.cfg = GenerationConfig(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, eos_id=tokenizer.eos_id, seed=seed,
            stop=tuple(dict.fromkeys([*template.stop, *template.markup()])),
        )  # fmt: skip
        self.cfg.check()
        self.last_dropped = 0  # turns dropped to fit the context at the last reply
        self.compares = 0  # /compare runs so far: a seeded session seeds each candidate of each run apart

    # ------------------------------------------------------------ settings
    def reset(self) -> None:
        self.history = []

    def set_system(self, text: str) -> None:
        self.system = text.strip() or None

    def set_temperature(self, value: float) -> None:
        cfg = dataclasses.replace(self.cfg, temperature=value)
        cfg.check()
        self.cfg = cfg

    # ------------------------------------------------------------ the model
    def messages(self, user: str) -> list[tuple[str, str]]:
        head = [("system", self.system)] if self.system else []
        return [*head, *self.history, ("user", user)]

    def prompt(self, user: str) -> list[int]:
        """The prompt ids for a new user message, oldest turns dropped to leave room for the answer."""
        reserve = max(1, min(self.cfg.max_new_tokens, self.block_size // 2))
        messages = self.messages(user)
        kept, ids = fit_context(self.template, self.tokenizer, messages, self.block_size - reserve)
        self.last_dropped = len(messages) - len(kept)
        if self.last_dropped:
            keep = len(self.history) - self.last_dropped
            self.history = self.history[len(self.history) - keep :]
        return ids

    def _generate(self, user: str, cfg: GenerationConfig) -> Iterator[str]:
        ids = self.prompt(user)
        cfg = dataclasses.replace(cfg, max_new_tokens=min(cfg.max_new_tokens, self.block_size - len(ids)))
        return stream(self.model, ids, cfg, self.tokenizer.decode)

    def _moderated(self, pieces: Iterable[str]) -> Iterator[str]:
        """Pieces as they may be shown: stops with the refusal when the answer so far is refused."""
        text = ""
        for piece in pieces:
            if self.moderator is not None and not self.moderator.check_output(text + piece).allowed:
                yield ("\n" if text else "") + self.moderator.policy.refusal
                return
            text += piece
            yield piece

    def reply(self, user: str) -> Iterator[str]:
        """Stream the answer to ``user``; the turn joins the history when the answer is complete."""
        if not user.strip():
            raise ConfigError("the message is empty: type something (or /help)")
        if self.moderator is not None:
            verdict = self.moderator.check_input(user)
            if not verdict.allowed:
                yield self.moderator.policy.refusal
                return
        shown = []
        for piece in self._moderated(self._generate(user, self.cfg)):
            shown.append(piece)
            yield piece
        answer = self.template.clean("".join(shown))
        self.history += [("user", user), ("assistant", answer)]

    def answer(self, user: str) -> str:
        return self.template.clean("".join(self.reply(user)))

    def candidates(self, user: str, n: int = 2) -> list[str]:
        """``n`` sampled answers to ``user`` (temperature >= 0.7, so that they differ); not in the history.
        A session with a seed samples them with seeds derived from it (the same session, the same pairs)."""
        if not user.strip():
            raise ConfigError("the message is empty: /compare QUESTION, or ask something first")
        if self.moderator is not None and not self.moderator.check_input(user).allowed:
            raise ConfigError(f"that message is refused by moderation: {self.moderator.policy.refusal}")
        cfg = dataclasses.replace(self.cfg, temperature=max(self.cfg.temperature, 0.7))
        base, self.compares = None if cfg.seed is None else cfg.seed + 1 + n * self.compares, self.compares + 1
        out = []
        for i in range(n):
            seeded = dataclasses.replace(cfg, seed=None if base is None else base + i)
            text = "".join(self._moderated(self._generate(user, seeded)))
            out.append(self.template.clean(text))
        return out

    def record(self, user: str, a: str, b: str, choice: str, thumbs: str | None = None) -> dict:
        """Write the user's ranking of A and B (and the thumbs for the preferred one) to the preferences JSONL."""
        from genlab.data.chat import user_preference

        row = user_preference(user, a, b, choice, model=self.name)
        if thumbs is not None:
            if thumbs not in ("up", "down"):
                raise ConfigError(f"thumbs are 'up' or 'down', got {thumbs!r}")
            row["thumbs"] = thumbs
        row["time"] = int(time.time())
        if self.preferences is not None:
            append_jsonl(self.preferences, row)
        self.history += [("user", user), ("assistant", row["chosen"])]
        return row

    def save(self, path: str | Path) -> Path:
        messages = [{"role": r, "content": c} for r, c in ([("system", self.system)] if self.system else [])]
        messages += [{"role": r, "content": c} for r, c in self.history]
        if not self.history:
            raise ConfigError("nothing to save yet: the conversation is empty")
        return append_jsonl(path, {"messages": messages, "source": "genlab-chat", "model": self.name})


class Terminal:
    """The REPL: reads lines from ``read`` (None at end of input), writes to ``out``."""

    def __init__(self, session: ChatSession, read: Callable[[str], str | None], out: TextIO = sys.stdout) -> None:
        self.session, self.read, self.out = session, read, out

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def ask(self, user: str) -> None:
        dropped_before = self.session.last_dropped
        try:
            for piece in self.session.reply(user):
                self.out.write(piece)
                self.out.flush()
        except GenlabError as e:
            self.say(f"({e})")
            return
        self.say()
        if self.session.last_dropped and self.session.last_dropped != dropped_before:
            self.say(
                f"(the conversation outgrew the context: the oldest {self.session.last_dropped} turn(s) were dropped)"
            )

    def compare(self, question: str) -> None:
        s = self.session
        question = question.strip() or next((c for r, c in reversed(s.history) if r == "user"), "")
        try:
            a, b = s.candidates(question)
        except GenlabError as e:
            self.say(f"({e})")
            return
        self.say(f"[A] {a}\n[B] {b}")
        choice = (self.read("which is better, a or b (enter skips)? ") or "").strip().lower()
        if choice not in ("a", "b"):
            self.say("(not recorded)")
            return
        thumbs = (self.read("and is it good: up or down (enter skips)? ") or "").strip().lower() or None
        if thumbs not in (None, "up", "down"):
            self.say("(thumbs are up or down; recorded without them)")
            thumbs = None
        s.record(question, a, b, choice, thumbs)
        where = f" to {s.preferences}" if s.preferences is not None else ""
        self.say(f"(recorded: {choice.upper()} preferred{', thumbs ' + thumbs if thumbs else ''}{where})")

    def command(self, line: str) -> bool:
        """Run one /command; False means quit."""
        name, _, arg = line[1:].partition(" ")
        s = self.session
        if name in ("quit", "exit"):
            return False
        if name == "help":
            self.say(HELP)
        elif name == "reset":
            s.reset()
            self.say("(history cleared" + (", system prompt kept)" if s.system else ")"))
        elif name == "system":
            s.set_system(arg)
            self.say(f"(system prompt: {s.system})" if s.system else "(system prompt cleared)")
        elif name == "temperature":
            try:
                s.set_temperature(float(arg))
                self.say(f"(temperature {s.cfg.temperature:g})")
            except (ValueError, GenlabError) as e:
                self.say(f"(/temperature takes a number >= 0, e.g. /temperature 0.8: {e})")
        elif name == "save":
            if not arg.strip():
                self.say("(/save takes a path, e.g. /save chat.jsonl)")
            else:
                try:
                    self.say(f"(saved to {s.save(arg.strip())})")
                except GenlabError as e:
                    self.say(f"({e})")
        elif name == "compare":
            self.compare(arg)
        else:
            self.say(f"(unknown command /{name}; /help lists them)")
        return True

    def run(self) -> None:
        while True:
            line = self.read("> ")
            if line is None:
                return
            line = line.rstrip("\n")
            if line.startswith("/"):
                if not self.command(line.strip()):
                    return
            elif not line.strip():
                self.say("(empty message: type something, or /help)")
            else:
                self.ask(line)


def load_session(run_dir: str | Path, checkpoint: str = "best", **options) -> ChatSession:
    """A :class:`ChatSession` on a GPT run with a chat template (one-line errors otherwise)."""
    run_dir = Path(run_dir)
    model, tok, _ = load_run(run_dir, checkpoint)
    if not hasattr(model, "config") or not hasattr(model.config, "block_size") or not hasattr(tok, "decode"):
        raise ConfigError(f"{run_dir} is not a language-model run: genlab chat talks to GPT runs")
    template = find_template(run_dir, tok)
    if template is None:
        raise ConfigError(
            f"{run_dir} has no chat template: fine-tune it with the chat recipes, or add a {TEMPLATE_FILE} "
            "(see genlab.tokenizers.chat)"
        )
    options.setdefault("preferences", run_dir / PREFERENCES_FILE)
    options.setdefault("name", run_dir.resolve().name)
    return ChatSession(model, tok, template, **options)


def stdin_reader(interactive: bool) -> Callable[[str], str | None]:
    """``input()`` with a prompt on a terminal; plain lines (no prompt) from a pipe; None at the end."""

    def read(prompt: str) -> str | None:
        try:
            if interactive:
                return input(prompt)
            line = sys.stdin.readline()
            return None if line == "" else line
        except EOFError:
            return None

    return read
