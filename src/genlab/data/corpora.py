"""The text sets of the encoder tasks, as config data: fortune topics, code-search pairs, pretraining corpora.

- :class:`TopicData`: the fortune topic task (:func:`genlab.data.text_tasks.fortune_topics`) and
  how its texts are tokenized; :func:`topic_dataset` builds it.
- :class:`CodeData`: standard-library (docstring summary, code) pairs split by package
  (:mod:`genlab.data.code`); :func:`code_split` builds it.
- :func:`pretrain_corpus`, for ``corpus``:

  - ``fortunes``: every fortune of every topic, one text per sequence, minus the validation and
    test texts of the fortune topic task (the classifier's settings), so a classifier fine-tuned
    from the run is never tested on text it was pretrained on; ``val_size`` texts drawn with
    ``seed`` are held out for the validation loss;
  - ``python-code``: the training packages' (docstring, code) pairs, each one bimodal sequence
    ``[CLS] docstring [SEP] code [SEP]`` (segments 0 and 1), as CodeBERT (Feng et al. 2020,
    arXiv:2002.08155) pretrains; the validation pairs are the split's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genlab.core.errors import ConfigError
from genlab.data.code import CodeSearchSplit, split_by_package, stdlib_pairs
from genlab.data.text_tasks import TopicDataset, fortune_corpus, fortune_topics

CORPORA = ("fortunes", "python-code")


@dataclass
class TopicData:
    """The fortune topic task (:func:`genlab.data.text_tasks.fortune_topics`) and its tokenization."""

    topics: list[str] = field(default_factory=list)  # class names; empty: every topic with min_entries
    min_entries: int = 300
    max_chars: int = 400  # longer fortunes are dropped
    max_per_topic: int = 300  # balanced classes: chance = 1 / K
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    max_length: int = 0  # tokens per text with [CLS]/[SEP]; 0: the model's position table
    truncation: str = "warn"  # a longer text: warn (truncate, say how many) | error
    vocab_size: int = 8192  # the WordPiece vocabulary trained for init: scratch
    tokenizer: str = ""  # init: scratch: "" trains one on the training texts; or a folder with tokenizer.json, minilm
    bucket: int = 50  # training batches drawn together and sorted by length (less padding); 0: off


@dataclass
class CodeData:
    """Standard-library (docstring, code) pairs split by package (:mod:`genlab.data.code`)."""

    test_size: int = 1000
    val_size: int = 200
    max_train: int = 0  # keep the first N training pairs (0: all)
    seed: int = 0
    root: str = ""  # the folder of Python sources; empty: the running interpreter's standard library


def topic_dataset(d: TopicData) -> TopicDataset:
    return fortune_topics(d.topics, d.min_entries, d.max_chars, d.max_per_topic, d.val_fraction, d.test_fraction,
                          d.seed)  # fmt: skip


def code_split(c: CodeData) -> CodeSearchSplit:
    """The code-search split of a :class:`CodeData` (training pairs cut to ``max_train``)."""
    split = split_by_package(stdlib_pairs(c.root or None), c.test_size, c.val_size, c.seed)
    if c.max_train:
        split.train = split.train[: c.max_train]
    return split


@dataclass
class Corpus:
    train: list  # texts, or (docstring, code) pairs
    val: list
    tokenizer_text: list[str]  # what the vocabulary is trained on


def pretrain_corpus(corpus: str, val_size: int, topics: TopicData, code: CodeData, seed: int) -> Corpus:
    """The training and validation sequences of a pretraining corpus (module docstring)."""
    if corpus == "fortunes":
        held = topic_dataset(topics).held_out()
        texts = fortune_corpus(exclude=held)
        if not 0 < val_size < len(texts):
            raise ConfigError(f"data.val_size={val_size} must be between 1 and {len(texts) - 1}")
        rng = np.random.default_rng(seed)
        is_val = np.zeros(len(texts), dtype=bool)
        is_val[rng.choice(len(texts), size=val_size, replace=False)] = True
        train = [t for t, v in zip(texts, is_val) if not v]
        return Corpus(train, [t for t, v in zip(texts, is_val) if v], train)
    if corpus == "python-code":
        split = code_split(code)
        pairs = [(p.query, p.code) for p in split.train]
        val = [(p.query, p.code) for p in split.val]
        return Corpus(pairs, val, [s for pair in pairs for s in pair])
    raise ConfigError(f"unknown data.corpus '{corpus}'; choose from {list(CORPORA)}")
