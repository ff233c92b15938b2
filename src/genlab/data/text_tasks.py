"""Labelled text tasks for encoders: fortune topics, seeded stratified splits, resumable batches.

Fortune topic classification: each Debian ``fortunes`` topic file (art, computers, food,
science, ...) is a class and each of its fortunes an example (:func:`fortune_topics`). The
selection is data:

- fortunes longer than ``max_chars`` characters are dropped (the long tail of multi-paragraph
  stories would be truncated to the encoder's window anyway, and dominate the compute);
- a text found under two topics is dropped from both (its label would be a coin toss), and a
  text repeated within one topic is kept once;
- ``topics`` names the classes, or (empty) every topic with at least ``min_entries`` fortunes
  left; each class keeps at most ``max_per_topic`` fortunes (a seeded sample, in file order),
  which balances the classes so that chance is 1 / K;
- train / val / test are stratified: each class is shuffled with ``seed`` and cut by the
  fractions, so every split has every class in the same proportions.

The same inputs always give the same splits (numpy's seeded ``default_rng``; no hash of
Python objects is involved).

:class:`ShuffledBatches` draws endless shuffled mini-batches of item indices and hands them to a
``collate`` function (the recipe pads token ids there), resumably and DDP-aware.

Tier 1: imports only ``genlab.core``, ``genlab.data``, numpy and torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.core.errors import DataError
from genlab.data.sources import load_fortunes


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray  # (N,) int64 class ids

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TopicDataset:
    """A text-classification task: class names and three disjoint labelled splits."""

    classes: list[str]
    train: LabelledTexts
    val: LabelledTexts
    test: LabelledTexts

    def held_out(self) -> set[str]:
        """The validation and test texts (a pretraining corpus must not contain them)."""
        return set(self.val.texts) | set(self.test.texts)


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, val, test) of a stratified split, each sorted ascending.

    Per class of n items: round(test_fraction * n) go to test and round(val_fraction * n) to val
    (at least one each when the fraction is positive), drawn from a permutation of the class
    seeded with ``seed``; the rest (at least one) to train.
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise DataError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 and sum below 1")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = len(members)
        n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
        n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
        if n - n_test - n_val < 1:
            raise DataError(f"class {c} has {n} items: too few for a train, val and test split")
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test : n_test + n_val])
        parts[0].append(members[n_test + n_val :])
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def fortune_topics(
    topics: Sequence[str] = (),
    min_entries: int = 300,
    max_chars: int = 400,
    max_per_topic: int = 300,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    folder: Path | None = None,
) -> TopicDataset:
    """The fortune topic-classification task (see the module docstring).

    ``folder`` defaults to the installed fortunes (:func:`genlab.data.sources.fortunes_dir`).
    Class ids follow the order of ``topics``, or the alphabetical order of the chosen topics.
    """
    if max_chars < 1 or max_per_topic < 3 or min_entries < 3:
        raise DataError("max_chars must be >= 1, max_per_topic and min_entries >= 3 (a train, val and test item)")
    entries = load_fortunes(folder)
    by_topic: dict[str, list[str]] = {}
    for text, topic in entries:
        if len(text) <= max_chars:
            by_topic.setdefault(topic, []).append(text)
    # A text under two topics is ambiguous: drop it everywhere. Repeats within a topic: keep one.
    owners = Counter(t for texts in by_topic.values() for t in set(texts))
    for topic, texts in by_topic.items():
        by_topic[topic] = [t for t in dict.fromkeys(texts) if owners[t] == 1]
    if topics:
        unknown = [t for t in topics if t not in by_topic]
        if unknown:
            raise DataError(f"no fortune topic '{unknown[0]}' (with texts of at most {max_chars} characters); "
                            f"topics: {', '.join(sorted(by_topic))}")  # fmt: skip
        if len(set(topics)) != len(topics):
            raise DataError(f"topics lists a topic twice: {list(topics)}")
        classes = list(topics)
    else:
        classes = sorted(t for t, texts in by_topic.items() if len(texts) >= min_entries)
    if len(classes) < 2:
        raise DataError(
            f"only {len(classes)} fortune topic(s) have {min_entries}+ texts of at most {max_chars} characters: "
            "lower min_entries or name the topics"
        )
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for c, topic in enumerate(classes):
        pool = by_topic[topic]
        if len(pool) < 3:
            raise DataError(f"fortune topic '{topic}' has {len(pool)} usable texts: too few to split")
        keep = np.sort(rng.choice(len(pool), size=min(max_per_topic, len(pool)), replace=False))
        texts.extend(pool[i] for i in keep)
        labels.extend([c] * len(keep))
    y = np.asarray(labels, dtype=np.int64)
    parts = stratified_split(y, val_fraction, test_fraction, seed)
    train, val, test = (LabelledTexts([texts[i] for i in idx], y[idx]) for idx in parts)
    return TopicDataset(classes, train, val, test)


def fortune_corpus(exclude: set[str] = frozenset(), folder: Path | None = None) -> list[str]:
    """Every fortune of every topic (offensive ones excepted), in file order, once each, minus ``exclude``:
    an unlabelled pretraining corpus that leaves a classification task's val and test texts out."""
    return [t for t in dict.fromkeys(text for text, _ in load_fortunes(folder)) if t not in exclude]


def length_sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index batches that cover every item once, longest first, so that each batch holds
    sequences of about the same length (little padding) for evaluation."""
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
