"""Moderation: a check on the user's message before the model sees it and on the model's answer
before the user does.

Two tests, either one refuses:

1. offensive language: ``alt-profanity-check``'s classifier (a linear SVM on bag-of-words, trained on
   human-labelled offensive text; the maintained fork of Zhou's ``profanity-check``) gives
   p(offensive); at or above ``Policy.threshold`` the text is refused;
2. a configurable policy of refused topics: each topic is a list of regular expressions matched
   (case-insensitively) against the text; any match refuses.

A refused message gets the fixed ``Policy.refusal`` text instead of an answer (the user's input never
reaches the model; a refused output never reaches the user). A policy is data: a dict, or a JSON/YAML
file with ``threshold``, ``refusal`` and ``topics`` (topic -> patterns).

Tier 5: imports only ``genlab.core`` (and ``profanity_check`` lazily, inside :func:`profanity_scorer`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.errors import ConfigError

REFUSAL = "Sorry, I can't help with that."

#: Refused topics by default: requests for serious harm (patterns over the lower-cased text).
DEFAULT_TOPICS: dict[str, tuple[str, ...]] = {
    "weapons": (
        r"\b(make|build|assemble|construct)\b.{0,40}\b(bomb|explosive|pipe ?bomb|nerve agent|bioweapon)s?\b",
        r"\bhow (do i|to|can i)\b.{0,40}\b(detonate|weaponi[sz]e)\b",
    ),
    "malware": (
        r"\b(write|make|create|code)\b.{0,40}\b(ransomware|keylogger|computer virus|botnet|malware)\b",
    ),
    "self-harm": (
        r"\b(kill|hurt|harm) myself\b",
        r"\bhow (do i|to|can i)\b.{0,30}\b(commit suicide|end my life)\b",
    ),
    "violence": (
        r"\bhow (do i|to|can i)\b.{0,30}\b(kill|murder|poison|kidnap)\b.{0,20}\b(someone|a person|my|him|her|people)\b",
    ),
}  # fmt: skip

Scorer = Callable[[Sequence[str]], Sequence[float]]


@dataclass(frozen=True)
class Policy:
    threshold: float = 0.8  # p(offensive) at or above this refuses
    refusal: str = REFUSAL
    topics: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_TOPICS))

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"moderation threshold must be in (0, 1], got {self.threshold}")
        if not isinstance(self.refusal, str) or not self.refusal.strip():
            raise ConfigError("the moderation refusal must be a non-empty string")
        for topic, patterns in self.topics.items():
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as e:
                    raise ConfigError(f"topic '{topic}': pattern {p!r} is not a regular expression ({e})") from e

    @classmethod
    def from_dict(cls, data: dict, source: str = "the policy") -> Policy:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a moderation policy is a mapping with keys threshold, refusal, topics")
        unknown = sorted(set(data) - {"threshold", "refusal", "topics"})
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown}; valid: ['threshold', 'refusal', 'topics']")
        topics = data.get("topics", DEFAULT_TOPICS)
        if not isinstance(topics, dict) or not all(isinstance(v, list | tuple) for v in topics.values()):
            raise ConfigError(f"{source}: 'topics' maps a topic name to a list of patterns")
        return cls(
            threshold=float(data.get("threshold", cls.threshold)),
            refusal=data.get("refusal", REFUSAL),
            topics={str(k): tuple(str(p) for p in v) for k, v in topics.items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """A policy from a ``.json`` or ``.yaml``/``.yml`` file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the moderation policy {path}: {str(e).splitlines()[0]}") from e
        return cls.from_dict(data, str(path))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    score: float  # p(offensive) from the classifier
    reason: str | None = None  # "offensive" or "topic:<name>"


def profanity_scorer() -> Scorer:
    """``alt-profanity-check``'s p(offensive) per text (imported here: it loads scikit-learn)."""
    try:
        from profanity_check import predict_prob
    except ImportError as e:
        raise ConfigError("moderation needs alt-profanity-check: pip install 'genlab[safety]'") from e
    return lambda texts: [float(p) for p in predict_prob(list(texts))]


class Moderator:
    """Checks user input and model output against a :class:`Policy`."""

    def __init__(self, policy: Policy | None = None, scorer: Scorer | None = None) -> None:
        self.policy = policy or Policy()
        self._scorer = scorer
        self._topics = {t: [re.compile(p, re.I | re.S) for p in ps] for t, ps in self.policy.topics.items()}

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = profanity_scorer()
        return self._scorer

    def topic(self, text: str) -> str | None:
        for name, patterns in self._topics.items():
            if any(p.search(text) for p in patterns):
                return name
        return None

    def check_many(self, texts: Sequence[str]) -> list[Verdict]:
        scores = self.scorer(texts) if texts else []
        out = []
        for text, score in zip(texts, scores, strict=True):
            topic = self.topic(text)
            if topic is not None:
                out.append(Verdict(False, score, f"topic:{topic}"))
            elif score >= self.policy.threshold:
                out.append(Verdict(False, score, "offensive"))
            else:
                out.append(Verdict(True, score))
        return out

    def check(self, text: str) -> Verdict:
        return self.check_many([text])[0]

    def check_input(self, text: str) -> Verdict:
        """The user's message: refused messages never reach the model."""
        return self.check(text)

    def check_output(self, text: str) -> Verdict:
        """The model's answer: refused answers never reach the user."""
        return self.check(text)

    def filter_output(self, text: str) -> str:
        """The answer itself, or the refusal message."""
        return text if self.check_output(text).allowed else self.policy.refusal


def false_positive_rate(moderator: Moderator, benign: Sequence[str]) -> tuple[float, list[str]]:
    """(share of benign texts refused, the refused ones)."""
    if not benign:
        raise ConfigError("false_positive_rate needs at least one benign text")
    verdicts = moderator.check_many(list(benign))
    refused = [t for t, v in zip(benign, verdicts, strict=True) if not v.allowed]
    return len(refused) / len(benign), refused
