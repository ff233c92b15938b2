"""Chat templates: a conversation -> the text (and token ids) a language model continues.

A chat model is a language model trained on conversations written in one fixed markup. The
markup is data of the tokenizer: role tokens (``<|system|>``, ``<|user|>``, ``<|assistant|>``) open
a turn and an end-of-turn token (``<|end|>``) closes it; in a BPE vocabulary each is one special
token, matched whole in text, so a user cannot spell half of one. A conversation::

    <|system|>\\nBe brief.<|end|>\\n<|user|>\\nWhat is 2+2?<|end|>\\n<|assistant|>\\n4<|end|>\\n

A template is one pattern per role with ``{content}`` in it (a plain replacement: braces in the
content stay as they are), ``generation`` (the text that opens the assistant's turn) and ``stop``
(strings that end the assistant's turn). The ``developer`` role uses the ``system`` pattern.
It is saved beside the run as ``chat_template.json``; a tokenizer may carry one as a
``chat_template`` attribute (a dict of the same keys, or a :class:`ChatTemplate`).

:func:`render_ids` turns a conversation into ids and an assistant mask: 1 on the tokens of the
assistant's content and its end-of-turn markup (what supervised fine-tuning learns, so the model
learns to stop), 0 on everything else. Each turn's opening, content and closing are encoded
separately and concatenated, so the mask is exact and prompts at generation time
(:func:`prompt_ids`) are a prefix of the training ids of the same conversation.

:func:`to_jinja` writes the same template in Hugging Face's ``chat_template`` form (Jinja),
which ``transformers``' ``apply_chat_template`` renders to the same text as :meth:`ChatTemplate.render`.

Tier 1: imports only ``genlab.core`` and the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genlab.core.errors import ConfigError, TokenizerError

TEMPLATE_FILE = "chat_template.json"
ROLES = ("system", "user", "assistant")
_KEYS = [*ROLES, "generation", "stop"]

SYSTEM_TOKEN = "<|system|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
END_TOKEN = "<|end|>"
#: The role tokens a chat tokenizer holds as special tokens, in id order after end-of-text.
ROLE_TOKENS = (SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN, END_TOKEN)

Message = tuple[str, str] | dict


@dataclass(frozen=True)
class ChatTemplate:
    system: str = "{content}\n"
    user: str = "{content}\n"
    assistant: str = "{content}\n"
    generation: str = ""
    stop: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: dict, source: str = TEMPLATE_FILE) -> ChatTemplate:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a chat template is a JSON object with keys {_KEYS}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown}; valid: {_KEYS}")
        for role in ROLES:
            if role in data and (not isinstance(data[role], str) or "{content}" not in data[role]):
                raise ConfigError(f"{source}: '{role}' must be a string holding '{{content}}'")
        stop = data.get("stop", [])
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(f"{source}: 'stop' must be a list of non-empty strings")
        if not isinstance(data.get("generation", ""), str):
            raise ConfigError(f"{source}: 'generation' must be a string")
        return cls(**{k: v for k, v in data.items() if k in ROLES or k == "generation"}, stop=tuple(stop))

    def to_dict(self) -> dict:
        return {**asdict(self), "stop": list(self.stop)}

    def pattern(self, role: str) -> str:
        if role == "developer":
            role = "system"
        if role not in ROLES:
            raise ConfigError(f"unknown chat role '{role}': use one of {[*ROLES, 'developer']}")
        return getattr(self, role)

    def split(self, role: str) -> tuple[str, str]:
        """(opening, closing): the role's pattern before and after ``{content}``."""
        before, _, after = self.pattern(role).partition("{content}")
        return before, after

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """``[(role, content), ...]`` -> the text; with ``add_generation_prompt`` it ends with the
        opening of the assistant's turn."""
        parts = [self.pattern(role).replace("{content}", content) for role, content in _pairs(messages)]
        return "".join(parts) + (self.generation if add_generation_prompt else "")

    def markup(self) -> tuple[str, ...]:
        """Every piece of template markup (role openings and closings, stops), longest first."""
        pieces = {p for role in ROLES for p in self.split(role)} | {self.generation, *self.stop}
        return tuple(sorted((p.strip() for p in pieces if p.strip()), key=len, reverse=True))

    def clean(self, text: str) -> str:
        """Generated text as the user may see it: cut at the first stop, markup removed."""
        for s in self.stop:
            at = text.find(s)
            if at != -1:
                text = text[:at]
        for piece in self.markup():
            text = text.replace(piece, "")
        return text.strip()


#: The role-token template chat runs are trained with.
ROLE_TOKEN_TEMPLATE = ChatTemplate(
    system=f"{SYSTEM_TOKEN}\n{{content}}{END_TOKEN}\n",
    user=f"{USER_TOKEN}\n{{content}}{END_TOKEN}\n",
    assistant=f"{ASSISTANT_TOKEN}\n{{content}}{END_TOKEN}\n",
    generation=f"{ASSISTANT_TOKEN}\n",
    stop=(END_TOKEN, USER_TOKEN),
)


#: The plain-text template of a run whose tokenizer has no role tokens (a character-level run):
#: ``User: ...`` / ``Assistant: ...`` lines; the assistant's turn ends at the next ``User:``.
PLAIN_TEMPLATE = ChatTemplate(
    system="System: {content}\n",
    user="User: {content}\n",
    assistant="Assistant: {content}\n",
    generation="Assistant: ",
    stop=("\nUser:",),
)

#: The templates a stage may name (``template=role-tokens``); a path to a JSON file also works.
TEMPLATES = {"role-tokens": ROLE_TOKEN_TEMPLATE, "plain": PLAIN_TEMPLATE}


def _pairs(messages: Sequence[Message]) -> list[tuple[str, str]]:
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ConfigError(f"message {i}: needs string 'role' and 'content', got {sorted(m)}")
            out.append((m["role"], m["content"]))
        else:
            role, content = m
            out.append((role, content))
    return out


# ---------------------------------------------------------------- ids and the assistant mask


def render_ids(
    template: ChatTemplate, tokenizer, messages: Sequence[Message], add_generation_prompt: bool = False
) -> tuple[list[int], list[int]]:
    """(ids, assistant_mask) of a conversation: mask 1 on each assistant turn's content and closing
    markup, 0 elsewhere (system and user turns, every role opening, the generation prompt)."""
    ids: list[int] = []
    mask: list[int] = []
    for role, content in _pairs(messages):
        opening, closing = template.split(role)
        head = tokenizer.encode(opening) if opening else []
        body = tokenizer.encode(content + closing) if content + closing else []
        ids += head + body
        mask += [0] * len(head) + [int(role == "assistant")] * len(body)
    if add_generation_prompt and template.generation:
        gen = tokenizer.encode(template.generation)
        ids += gen
        mask += [0] * len(gen)
    return ids, mask


def prompt_ids(template: ChatTemplate, tokenizer, messages: Sequence[Message]) -> list[int]:
    """The ids a chat model continues: the conversation, then the opening of the assistant's turn."""
    return render_ids(template, tokenizer, messages, add_generation_prompt=True)[0]


def reply_ids(template: ChatTemplate, tokenizer, content: str) -> list[int]:
    """The ids of an assistant reply as :func:`render_ids` writes them after the turn's opening:
    the content and the closing markup (what follows :func:`prompt_ids` in training data)."""
    ids, mask = render_ids(template, tokenizer, [("assistant", content)])
    return [i for i, m in zip(ids, mask) if m]


def end_of_turn_id(template: ChatTemplate, tokenizer) -> int | None:
    """The token that ends the assistant's turn when the template's first stop is one token
    (``<|end|>`` of a chat tokenizer), else the tokenizer's end-of-text id."""
    if template.stop:
        ids = tokenizer.encode(template.stop[0])
        if len(ids) == 1:
            return ids[0]
    return getattr(tokenizer, "eos_id", None)


def fit_context(
    template: ChatTemplate, tokenizer, messages: Sequence[Message], budget: int
) -> tuple[list[tuple[str, str]], list[int]]:
    """Drop the oldest non-system turns until the prompt fits in ``budget`` tokens.

    System messages always stay; the newest message always stays (a ConfigError when even the
    system prompt and that message alone do not fit). An assistant turn left at the front after
    its question went goes too, so the kept history starts with a user turn. Returns (kept
    messages, prompt ids).
    """
    pairs = _pairs(messages)
    system = [m for m in pairs if m[0] in ("system", "developer")]
    turns = [m for m in pairs if m[0] not in ("system", "developer")]
    while True:
        kept = system + turns
        ids = prompt_ids(template, tokenizer, kept)
        if len(ids) <= budget:
            return kept, ids
        if len(turns) <= 1:
            raise ConfigError(
                f"the system prompt and the last message take {len(ids)} tokens, more than the {budget} the "
                "context leaves: shorten them, or /reset"
            )
        turns = turns[1:]
        while len(turns) > 1 and turns[0][0] == "assistant":
            turns = turns[1:]


# ---------------------------------------------------------------- the tokenizer side


def add_role_tokens(tokenizer) -> None:
    """Give a BPE tokenizer the role tokens as special tokens (matched whole; a no-op if present)."""
    hf = getattr(tokenizer, "hf", None)
    if hf is None:
        raise TokenizerError(
            f"a {type(tokenizer).__name__} cannot hold role tokens: train a byte-level BPE tokenizer for chat"
        )
    missing = [t for t in ROLE_TOKENS if hf.token_to_id(t) is None]
    if missing:
        hf.add_special_tokens(missing)


def role_token_ids(tokenizer) -> dict[str, int]:
    """token -> id for the role tokens a tokenizer holds."""
    hf = getattr(tokenizer, "hf", None)
    found = {t: hf.token_to_id(t) for t in ROLE_TOKENS} if hf is not None else {}
    return {t: i for t, i in found.items() if i is not None}


def train_chat_bpe(text_or_iterator, vocab_size: int = 8192, min_frequency: int = 2):
    """A byte-level BPE tokenizer with end-of-text and the role tokens as its first special tokens."""
    from genlab.tokenizers.bpe import EOS_TOKEN, BPETokenizer

    return BPETokenizer.train(
        text_or_iterator, vocab_size=vocab_size, special_tokens=(EOS_TOKEN, *ROLE_TOKENS), min_frequency=min_frequency
    )


# ---------------------------------------------------------------- files


def save_template(template: ChatTemplate, directory: str | os.PathLike) -> Path:
    """Write ``directory/chat_template.json`` (atomically)."""
    path = Path(directory) / TEMPLATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(template.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_template(path: str | os.PathLike) -> ChatTemplate:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}): fix or delete it") from e
    return ChatTemplate.from_dict(data, str(path))


def default_template(tokenizer) -> ChatTemplate:
    """The template for a tokenizer without one: the role-token template when it holds every
    role token, else the plain-text template."""
    return ROLE_TOKEN_TEMPLATE if len(role_token_ids(tokenizer)) == len(ROLE_TOKENS) else PLAIN_TEMPLATE


def resolve_template(name: str, run_dir: str | os.PathLike | None, tokenizer) -> tuple[ChatTemplate, str]:
    """(template, where it came from) for a stage: ``name`` '' takes the run's own (its
    ``chat_template.json`` or the tokenizer's), else :func:`default_template`; 'role-tokens' or
    'plain' name one of :data:`TEMPLATES`; anything else is a path to a ``chat_template.json``."""
    if not name:
        found = find_template(run_dir, tokenizer)
        if found is not None:
            return found, f"the template of {run_dir}"
        chosen = default_template(tokenizer)
        kind = "role-tokens" if chosen == ROLE_TOKEN_TEMPLATE else "plain"
        return chosen, f"{run_dir} has no chat template: the {kind} template"
    if name in TEMPLATES:
        return TEMPLATES[name], f"the {name} template"
    if not Path(name).is_file():
        raise ConfigError(f"template is '' (the init run's), one of {sorted(TEMPLATES)} or a JSON file; got '{name}'")
    return load_template(name), str(name)


def find_template(run_dir: str | os.PathLike | None, tokenizer) -> ChatTemplate | None:
    """The run's chat template: ``run_dir/chat_template.json``, else the tokenizer's ``chat_template``, else None."""
    if run_dir is not None and (Path(run_dir) / TEMPLATE_FILE).is_file():
        return load_template(Path(run_dir) / TEMPLATE_FILE)
    attr = getattr(tokenizer, "chat_template", None)
    if isinstance(attr, ChatTemplate) or attr is None:
        return attr
    return ChatTemplate.from_dict(attr, "the tokenizer's chat_template")


# ---------------------------------------------------------------- Hugging Face export


def _literal(text: str) -> str:
    """A Jinja string literal (JSON's escapes are Jinja's for these characters)."""
    return json.dumps(text, ensure_ascii=True)


def to_jinja(template: ChatTemplate) -> str:
    """The template as a Hugging Face ``chat_template`` (Jinja over ``messages`` and
    ``add_generation_prompt``), rendering exactly :meth:`ChatTemplate.render`'s text."""
    branches = []
    for i, role in enumerate(("system", "user", "assistant")):
        opening, closing = template.split(role)
        roles = "['system', 'developer']" if role == "system" else f"['{role}']"
        keyword = "if" if i == 0 else "elif"
        branches.append(
            f"{{%- {keyword} message['role'] in {roles} -%}}"
            f"{{{{ {_literal(opening)} + message['content'] + {_literal(closing)} }}}}"
        )
    body = "".join(branches)
    error = "{{- raise_exception('unknown role: ' + message['role']) -}}"
    return (
        "{%- for message in messages -%}" + body + "{%- else -%}" + error + "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ " + _literal(template.generation) + " }}{%- endif -%}"
    )
