"""Where an encoder fine-tuning run starts: its tokenizer, its model config and the weights of its ``init``.

``init`` is ``scratch`` (random weights; a WordPiece vocabulary trained on the task's training
texts, or the one ``data.tokenizer`` names), ``minilm``, a genlab bert run directory (e.g. a
pretraining run: its encoder, its tokenizer; :func:`genlab.runs.load_run`) or a Hugging Face BERT
folder. A run resumed with ``--resume`` starts from its own config.yaml and tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from genlab.core.config import from_dict, merge, to_dict
from genlab.core.errors import ConfigError, TokenizerError
from genlab.models.bert import BertConfig
from genlab.runs import model_config, read_run_config
from genlab.runs.encoders import load_encoder, wordpiece_tokenizer
from genlab.tokenizers import WordPieceTokenizer

SCRATCH = "scratch"
#: Model fields a fine-tuning run may change on a pretrained encoder (the rest come with its weights).
FINETUNE_FIELDS = ("dropout", "attention_dropout", "classifier", "pooler", "attention")


def train_or_load_tokenizer(name: str, texts: list[str], vocab_size: int) -> WordPieceTokenizer:
    """A WordPiece vocabulary learnt from ``texts``, or the one saved at ``name``. Training is not
    deterministic (Hugging Face tokenizers breaks ties in hash-map order, tokenizers#1794): runs to
    be compared token for token should share one tokenizer."""
    return wordpiece_tokenizer(name) if name else WordPieceTokenizer.train(texts, vocab_size=vocab_size)


def finetune_config(model: dict, init: str, over: dict, vocab: int | None, source: BertConfig | None,
                    default: dict) -> BertConfig:  # fmt: skip
    """The model of a fine-tuning run (the recipe's ``model`` section with ``over``): for ``init:
    scratch`` the architecture ``model`` names (``default`` if none), else the source's with only
    FINETUNE_FIELDS changed."""
    if source is None:
        base = {} if {"preset", "family"} & set(model) else default
        return model_config({**base, **model, **over}, vocab_size=vocab)
    extra = [k for k in model if k not in FINETUNE_FIELDS]
    if extra:
        raise ConfigError(
            f"model.{extra[0]} comes with the weights of init={init}; a fine-tuning run may set only "
            f"{', '.join('model.' + k for k in FINETUNE_FIELDS)}"
        )
    return from_dict(BertConfig, merge(to_dict(source), {**model, **over}), "model")


def finetune_start(
    task: str, init: str, checkpoint: str, model: dict, tokenizer: str, vocab_size: int, run_dir: Path,
    resume: bool, texts: Callable[[], list[str]], over: dict, default: dict,
) -> tuple[WordPieceTokenizer, BertConfig, dict[str, torch.Tensor] | None]:  # fmt: skip
    """(tokenizer, model config, encoder weights to start from or None) of a fine-tuning run: the
    run's own when resuming; for ``init: scratch`` a vocabulary trained on ``texts()`` (or the
    folder ``tokenizer``) and the architecture of :func:`finetune_config`; else ``init``'s."""
    init_state = None
    if resume:
        tok = wordpiece_tokenizer(run_dir)
        cfg = model_config(read_run_config(run_dir)["model"])  # the resolved model the run started with
    elif init == SCRATCH:
        tok = train_or_load_tokenizer(tokenizer, texts(), vocab_size)
        cfg = finetune_config(model, init, over, tok.vocab_size, None, default)
    else:
        source = load_encoder(init, checkpoint)
        tok, init_state = source.tokenizer, source.model.state_dict()
        cfg = finetune_config(model, init, over, None, source.model.config, default)
    if not isinstance(cfg, BertConfig):
        raise ConfigError(f"{task} trains a bert model, not {type(cfg).__name__}")
    if tok.vocab_size != cfg.vocab_size:
        raise TokenizerError(f"{run_dir}: the tokenizer has {tok.vocab_size:,} tokens but the model "
                             f"{cfg.vocab_size:,}: they do not belong together")  # fmt: skip
    return tok, cfg, init_state
