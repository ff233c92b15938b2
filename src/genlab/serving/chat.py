"""Chat templates: a list of messages -> the prompt text a language model continues.

The seam a chat model plugs into. A run serves chat completions once it has a template:
a ``chat_template.json`` file in its run directory, or a ``chat_template`` attribute on its
tokenizer (a dict of the same keys, or a :class:`ChatTemplate`). The file::

    {"system": "<|system|>{content}\\n", "user": "<|user|>{content}\\n",
     "assistant": "<|assistant|>{content}\\n", "generation": "<|assistant|>", "stop": ["<|user|>"]}

Each message becomes its role's pattern with ``{content}`` replaced (a plain replacement: braces
in the content stay as they are); the ``developer`` role uses the ``system`` pattern. The prompt
ends with ``generation``, the text that opens the assistant's turn; ``stop`` strings end it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.errors import ConfigError

TEMPLATE_FILE = "chat_template.json"
ROLES = ("system", "user", "assistant")


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
            raise ConfigError(f"{source}: a chat template is a JSON object with keys {[*ROLES, 'generation', 'stop']}")
        unknown = sorted(set(data) - {*ROLES, "generation", "stop"})
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown}; valid: {[*ROLES, 'generation', 'stop']}")
        for role in ROLES:
            if role in data and (not isinstance(data[role], str) or "{content}" not in data[role]):
                raise ConfigError(f"{source}: '{role}' must be a string holding '{{content}}'")
        stop = data.get("stop", [])
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(f"{source}: 'stop' must be a list of non-empty strings")
        if not isinstance(data.get("generation", ""), str):
            raise ConfigError(f"{source}: 'generation' must be a string")
        return cls(**{k: v for k, v in data.items() if k in ROLES or k == "generation"}, stop=tuple(stop))

    def render(self, messages: list[tuple[str, str]]) -> str:
        """``[(role, content), ...]`` -> the prompt, ending with the opening of the assistant's turn."""
        parts = []
        for role, content in messages:
            pattern = getattr(self, "system" if role == "developer" else role)
            parts.append(pattern.replace("{content}", content))
        return "".join(parts) + self.generation


def find_template(run_dir: str | Path | None, tokenizer) -> ChatTemplate | None:
    """The run's chat template (module docstring), or None."""
    if run_dir is not None and (Path(run_dir) / TEMPLATE_FILE).is_file():
        path = Path(run_dir) / TEMPLATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from e
        return ChatTemplate.from_dict(data, str(path))
    attr = getattr(tokenizer, "chat_template", None)
    if isinstance(attr, ChatTemplate) or attr is None:
        return attr
    return ChatTemplate.from_dict(attr, "the tokenizer's chat_template")
