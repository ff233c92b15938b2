"""Named presets.

``@register("gpt2")`` on a function that returns a model config makes the name
available to ``genlab params``, recipes (``model.preset: gpt2``) and the
registry test, which gives every preset a forward, backward and save/load.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from genlab.core.errors import ConfigError

_PRESETS: dict[str, Callable[[], Any]] = {}


def register(name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        if name in _PRESETS:
            raise ValueError(f"preset '{name}' registered twice")
        _PRESETS[name] = fn
        return fn

    return deco


def preset(name: str) -> Any:
    """The config of preset ``name``; an unknown name lists the valid ones."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown preset '{name}'{hint}; run 'genlab list' to see all presets")
    return _PRESETS[name]()


def presets() -> list[str]:
    return sorted(_PRESETS)
