"""Chat templates for the server: the one home is :mod:`genlab.tokenizers.chat`.

A run serves chat completions once it has a template: a ``chat_template.json`` file in its run
directory, or a ``chat_template`` attribute on its tokenizer (see that module for the format).
"""

from __future__ import annotations

from genlab.tokenizers.chat import ROLES, TEMPLATE_FILE, ChatTemplate, find_template

__all__ = ["ROLES", "TEMPLATE_FILE", "ChatTemplate", "find_template"]
