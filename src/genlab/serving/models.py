"""What ``genlab serve`` serves: GPT runs (completions, chat) and encoders (embeddings).

A model id is the run directory's name or the name given with ``--name``; ``minilm`` names
all-MiniLM-L6-v2 (:mod:`genlab.runs.encoders`). A GPT run gets an :class:`Engine` (its
decode loop); an encoder (a bert run directory, a Hugging Face BERT folder or ``minilm``)
embeds as ``genlab embed`` does (:func:`genlab.eval.embeddings.embed_texts`, same batching).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genlab.core.errors import ConfigError
from genlab.eval.embeddings import embed_texts
from genlab.models import family_of
from genlab.runs import is_run_dir, load_run, model_config, read_run_config
from genlab.runs.encoders import MINILM, Encoder, load_encoder
from genlab.serving.chat import ChatTemplate, find_template
from genlab.serving.scheduler import Engine

EMBED_BATCH = 32  # texts per forward pass, as genlab embed's default


@dataclass
class LanguageModel:
    name: str
    engine: Engine
    tokenizer: Any
    chat: ChatTemplate | None
    source: str
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def block_size(self) -> int:
        return self.engine.block_size

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def token_text(self, token: int) -> str:
        return self.tokenizer.decode([token])


@dataclass
class EmbeddingModel:
    name: str
    encoder: Encoder
    source: str
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """(N, C) float32 unit rows and the number of tokens they used."""
        with self.lock:
            vectors, _ = embed_texts(self.encoder, texts, EMBED_BATCH)
            done = self.encoder.tokenizer.tokenize(texts, max_length=self.encoder.max_length, truncation="silent")
        return vectors, int(np.asarray(done.lengths).sum())


ServedModel = LanguageModel | EmbeddingModel


def model_id(spec: str | os.PathLike) -> str:
    name = os.fspath(spec)
    return MINILM if name == MINILM else Path(name).expanduser().resolve().name


def load_model(
    spec: str | os.PathLike,
    name: str | None = None,
    max_batch: int = 16,
    max_queue: int = 64,
    checkpoint: str = "best",
) -> ServedModel:
    """A run directory, a Hugging Face BERT folder or ``minilm`` -> a served model (engine not started)."""
    text = os.fspath(spec)
    name = name or model_id(text)
    if text == MINILM:
        return EmbeddingModel(name, load_encoder(MINILM), "all-MiniLM-L6-v2")
    path = Path(text).expanduser()
    if is_run_dir(path):
        family = family_of(model_config(read_run_config(path).get("model") or {}))
        if family == "bert":
            return EmbeddingModel(name, load_encoder(path, checkpoint), str(path))
        if family != "gpt":
            raise ConfigError(
                f"{path} is a {family} run: genlab serve serves GPT runs (completions, chat) and bert runs or "
                "minilm (embeddings)"
            )
        model, tok, _ = load_run(path, checkpoint)
        engine = Engine(model, tok.decode, tok.eos_id, max_batch=max_batch, max_queue=max_queue)
        return LanguageModel(name, engine, tok, find_template(path, tok), str(path))
    if path.is_dir():
        return EmbeddingModel(name, load_encoder(path), str(path))  # a Hugging Face BERT folder
    raise ConfigError(f"no model '{text}': give a genlab run directory, a Hugging Face BERT folder or 'minilm'")
