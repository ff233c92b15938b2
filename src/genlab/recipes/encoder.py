"""Encoder recipes: pretraining (MLM, ELECTRA, CodeBERT-style), fine-tuning, distillation, evaluation.

Four tasks, each a YAML under ``configs/bert/`` trained through the shared Trainer (progress
bar, metrics, best/last checkpoints, Ctrl-C, exact resume):

``encoder-pretrain`` (``objective: mlm | electra | codebert``) on a ``data.corpus``:

- ``fortunes``: every fortune of every topic, one text per sequence, minus the validation and
  test texts of the fortune topic task (``data.topics``, the same settings as the classifier's),
  so a classifier fine-tuned from the run is never tested on text it was pretrained on;
- ``python-code``: the standard library's (docstring summary, code) pairs of the training
  packages (:mod:`genlab.data.code`), each one bimodal sequence ``[CLS] docstring [SEP] code [SEP]``
  (segments 0 and 1), as CodeBERT (Feng et al. 2020, arXiv:2002.08155) pretrains.

A WordPiece vocabulary is trained on the training texts. Masking is dynamic (RoBERTa): each batch
draws a fresh 15% mask (80/10/10) from the global torch RNG, which checkpoints save and restore.

    mlm       L = L_MLM(encoder)                                   BERT / RoBERTa
    electra   L = L_MLM(generator) + lambda L_RTD(discriminator)    ELECTRA, lambda = 50
    codebert  L = L_MLM(encoder) + L_MLM(generator) + lambda L_RTD(encoder)

ELECTRA and CodeBERT use a small generator sharing the encoder's embeddings
(:func:`genlab.models.bert.electra_pair`); its samples replace the masked tokens and the
encoder detects them at every position (:mod:`genlab.objectives.electra`). CodeBERT trains one
encoder with both objectives: MLM on the masked pair and replaced-token detection on the
corrupted pair (its paper's generators are n-gram models; here the generator is learned, as
in ELECTRA). Masked-LM logits are computed at the masked positions only.

Compute: every run writes ``flops_per_token`` (FLOPs of one training step counted by
``torch.utils.flop_counter`` on a reference batch, forward and backward, divided by its padded
tokens), ``tokens`` (padded tokens of all steps) and ``train_flops`` to ``results.json``: runs
compared "at equal compute" are given step counts that make ``train_flops`` equal
(:func:`pretrain_flops_per_token` measures it before training).

``encoder-classify``: a sequence classifier on the fortune topics (:mod:`genlab.data.text_tasks`),
``init`` = ``scratch`` (random weights, a WordPiece vocabulary trained on the training texts),
``minilm``, a genlab bert run directory (e.g. a pretraining run: its encoder, its tokenizer) or a
Hugging Face BERT folder. Test accuracy of the best checkpoint goes to ``results.json``.

``encoder-distill``: DistilBERT (Sanh et al. 2019, arXiv:1910.01108): a student with half the
teacher's layers, initialised from every other teacher layer, trained on soft targets + hard
labels + the cosine of the last hidden states. ``results.json`` has the test accuracy of both,
the accuracy retained and the inference speed-up measured in the same process.

``encoder-retrieval``: a bi-encoder fine-tuned for code search on the training packages' pairs:
the docstring and the code are embedded apart (mean-pooled, normalised) and each docstring must
pick its code among the batch (in-batch InfoNCE, :mod:`genlab.objectives.contrastive`), the
fine-tuning CodeBERT's paper scores code search with. ``init`` as for ``encoder-classify``; the
best checkpoint is the highest validation MRR, and ``results.json`` has its test MRR and recall@k.

``genlab eval RUN`` scores a classifier run on its test split; ``genlab eval RUN --task
code-search`` (or ``minilm``) ranks all test functions for each docstring query by the cosine of
mean-pooled embeddings (:func:`code_search`) and reports MRR and recall@k.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.config import from_dict, merge, save_yaml, to_dict
from genlab.core.errors import CheckpointError, ConfigError, GenlabError, TokenizerError
from genlab.core.seed import seed_everything
from genlab.data.batches import ShuffledBatches
from genlab.data.code import CodePair, CodeSearchSplit, split_by_package, stdlib_pairs
from genlab.data.text_tasks import TopicDataset, fortune_corpus, fortune_topics, length_sorted_batches
from genlab.eval.retrieval import ranking_metrics
from genlab.models.bert import Bert, BertConfig, electra_pair
from genlab.objectives.contrastive import info_nce
from genlab.objectives.distill import distillation_loss, init_student_from_teacher
from genlab.objectives.electra import electra_loss, replaced_token_detection
from genlab.objectives.masked_lm import IGNORE_INDEX, mask_tokens, masked_lm_loss
from genlab.recipes.embed import Encoder, embed_texts, load_encoder
from genlab.recipes.runs import check_run_dir, create_run_dir, model_config, read_run_config
from genlab.tokenizers import WordPieceTokenizer
from genlab.tokenizers.wordpiece import Tokenized
from genlab.training.checkpoint import find_checkpoint
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime, unwrap

ENCODER_TASKS = ("encoder-pretrain", "encoder-classify", "encoder-distill", "encoder-retrieval")
OBJECTIVES = ("mlm", "electra", "codebert")
CORPORA = ("fortunes", "python-code")
SCRATCH = "scratch"
EVAL_TASKS = ("classify", "code-search")
#: Model fields a fine-tuning run may change on a pretrained encoder (the rest come with its weights).
FINETUNE_FIELDS = ("dropout", "attention_dropout", "classifier", "pooler", "attention")
#: Default token limit of code search, for every model alike (MiniLM's own is 256).
CODE_SEARCH_MAX_LENGTH = 128


# --- configuration ---------------------------------------------------------------------------


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


@dataclass
class PretrainData:
    corpus: str = "fortunes"  # fortunes | python-code
    vocab_size: int = 8192  # WordPiece vocabulary trained on the training texts
    tokenizer: str = ""  # "": train one; or a folder with tokenizer.json (another run's: same ids), minilm
    max_length: int = 0  # tokens per sequence; 0: the model's position table
    truncation: str = "warn"  # warn | error
    val_size: int = 500  # fortunes: corpus texts held out for the validation loss (code: code.val_size)
    bucket: int = 50  # batches drawn together and sorted by length (less padding); 0: off
    topics: TopicData = field(default_factory=TopicData)  # fortunes: this task's val/test texts stay out
    code: CodeData = field(default_factory=CodeData)


@dataclass
class PretrainLoss:
    mask_rate: float = 0.15
    replace: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # [MASK] / random / keep
    disc_weight: float = 50.0  # lambda of replaced-token detection (ELECTRA's 50)
    temperature: float = 1.0  # of the generator's samples


@dataclass
class PretrainRecipe:
    task: str = "encoder-pretrain"
    objective: str = "mlm"  # mlm | electra | codebert
    model: dict = field(default_factory=lambda: {"preset": "bert-mini", "pooler": False})  # the encoder
    generator: dict = field(default_factory=lambda: {"preset": "electra-mini-generator"})  # electra, codebert
    data: PretrainData = field(default_factory=PretrainData)
    loss: PretrainLoss = field(default_factory=PretrainLoss)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ClassifyRecipe:
    task: str = "encoder-classify"
    init: str = SCRATCH  # scratch | minilm | a bert run directory | a Hugging Face BERT folder
    checkpoint: str = "best"  # which checkpoint of an init run
    model: dict = field(default_factory=dict)  # scratch: the architecture (default preset bert-mini);
    # otherwise only FINETUNE_FIELDS (the run directory's config.yaml holds the resolved model)
    data: TopicData = field(default_factory=TopicData)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class RetrievalData:
    code: CodeData = field(default_factory=CodeData)
    max_length: int = CODE_SEARCH_MAX_LENGTH  # tokens per docstring and per code (code search's limit)
    truncation: str = "warn"
    vocab_size: int = 8192  # init: scratch: a WordPiece vocabulary trained on the training pairs
    tokenizer: str = ""  # init: scratch: or a folder with tokenizer.json, minilm
    bucket: int = 50  # training batches drawn together and sorted by code length; 0: off


@dataclass
class RetrievalRecipe:
    task: str = "encoder-retrieval"
    init: str = SCRATCH  # scratch | minilm | a bert run directory | a Hugging Face BERT folder
    checkpoint: str = "best"
    model: dict = field(default_factory=dict)  # scratch: the architecture (default preset bert-mini)
    data: RetrievalData = field(default_factory=RetrievalData)
    temperature: float = 0.05  # of the in-batch softmax over cosines
    eval_batch_size: int = 64
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DistillLoss:
    temperature: float = 2.0
    alpha_soft: float = 5.0  # KL to the teacher's softened distribution (DistilBERT's alpha_ce)
    alpha_hard: float = 2.0  # cross-entropy with the labels
    alpha_cos: float = 1.0  # 1 - cosine of the last hidden states


@dataclass
class SpeedConfig:
    batch_size: int = 64  # texts per forward pass, teacher and student alike
    repeats: int = 3  # timed passes over the test set per model, alternating; the fastest counts


@dataclass
class DistillRecipe:
    task: str = "encoder-distill"
    teacher: str = "runs/fortunes-scratch"  # an encoder-classify run
    checkpoint: str = "best"  # the teacher's checkpoint
    student_layers: int = 0  # 0: half the teacher's
    loss: DistillLoss = field(default_factory=DistillLoss)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: dict = field(default_factory=dict)  # written by the recipe: the student (leave empty)
    data: dict = field(default_factory=dict)  # written by the recipe: the teacher's data (leave empty)


# --- shared pieces -----------------------------------------------------------------------------


def _log(rt: Runtime) -> Callable[..., None]:
    return print if rt.is_main else (lambda *a, **k: None)


def _max_length(requested: int, cfg: BertConfig, where: str) -> int:
    """The token limit: ``requested`` (0: the position table), never beyond the position table."""
    if requested < 0:
        raise ConfigError(f"{where}.max_length must be >= 0 (0: the model's {cfg.block_size}), got {requested}")
    if requested > cfg.block_size:
        raise ConfigError(
            f"{where}.max_length={requested} exceeds the model's position table of {cfg.block_size} tokens: "
            f"use at most {cfg.block_size} (longer texts are truncated or refused by {where}.truncation)"
        )
    return requested or cfg.block_size


def tokenize(
    tok: WordPieceTokenizer, texts: Sequence[str | tuple[str, str]], max_length: int, truncation: str, what: str
) -> Tokenized:
    """Tokenize with [CLS]/[SEP]; a text over ``max_length`` tokens is cut (``truncation="warn"``,
    with one printed line that counts them) or is a TokenizerError naming it (``"error"``)."""
    if truncation not in ("warn", "error"):
        raise ConfigError(f"truncation must be 'warn' or 'error', got {truncation!r}")
    done = tok.tokenize(texts, max_length=max_length, truncation="silent" if truncation == "warn" else "error")
    if done.truncated:
        n = len(done.truncated)
        print(f"warning: {n} of {len(done)} {what} are longer than {max_length} tokens; truncated", file=sys.stderr)
    return done


def collate(tok: WordPieceTokenizer, done: Tokenized, rows: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Rows of a tokenized set as a padded batch of tensors (labels too, when given)."""
    b = tok.pad(done, rows)
    batch = {
        "input_ids": torch.from_numpy(b.input_ids),
        "attention_mask": torch.from_numpy(b.attention_mask),
        "token_type_ids": torch.from_numpy(b.token_type_ids),
    }
    if labels is not None:
        batch["labels"] = torch.from_numpy(labels[rows])
    return batch


def _lengths(done: Tokenized) -> np.ndarray:
    return np.fromiter((len(s) for s in done.ids), dtype=np.int64, count=len(done))


def _real_tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum())


def _batches(tok, done, labels, t: TrainConfig, rt: Runtime, bucket: int) -> ShuffledBatches:
    return ShuffledBatches(
        len(done), t.batch_size, lambda rows: collate(tok, done, rows, labels), seed=t.seed,
        rank=rt.rank, world_size=rt.world_size, lengths=_lengths(done), bucket=bucket,
    )  # fmt: skip


def _step_tokens(done: Tokenized, t: TrainConfig, bucket: int):
    """Padded tokens of each training step, in order: the training sampler replayed (no tensors built)."""
    lengths = _lengths(done)
    replay = ShuffledBatches(len(done), t.batch_size, lambda rows: len(rows) * int(lengths[rows].max()),
                             seed=t.seed, lengths=lengths, bucket=bucket)  # fmt: skip
    while True:
        yield sum(next(replay) for _ in range(t.grad_accum))


def padded_tokens(done: Tokenized, t: TrainConfig, bucket: int, steps: int) -> int:
    """Tokens (padding included) of the first ``steps`` steps' batches."""
    tokens = _step_tokens(done, t, bucket)
    return sum(next(tokens) for _ in range(steps))


def measure_flops(loss: Callable[[dict, dict], Any], models: dict[str, nn.Module], batch: dict) -> float:
    """FLOPs of one training step's forward and backward on ``batch`` (torch.utils.flop_counter:
    matmuls and attention), leaving the RNG and the gradients as they were."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(), FlopCounterMode(display=False) as counter:
        out = loss(models, batch)
        (out[0] if isinstance(out, tuple) else out).backward()
    for m in models.values():
        m.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _load_classify_data(d: TopicData) -> TopicDataset:
    return fortune_topics(
        d.topics, d.min_entries, d.max_chars, d.max_per_topic, d.val_fraction, d.test_fraction, d.seed
    )


def _encoder_keys(cfg: BertConfig) -> set[str]:
    """Parameter names of the encoder body (embeddings, layers, pooler): the model without heads."""
    with torch.device("meta"):
        return set(Bert(dataclasses.replace(cfg, heads=[])).state_dict())


def transfer_encoder(target: Bert, source: dict[str, torch.Tensor], where: str) -> list[str]:
    """Copy the encoder body of ``source`` (a Bert state dict) into ``target``; the target's heads
    (and its pooler, if the source has none) keep their fresh initialisation. Returns those
    names. CheckpointError when the bodies do not match."""
    body = _encoder_keys(target.config)
    own = target.state_dict()
    fresh = [k for k in own if k not in source or k not in body]
    missing = [k for k in fresh if k in body and not k.startswith("pooler.")]
    if missing:
        raise CheckpointError(f"{where} does not hold this encoder: no weights for {missing[:3]}")
    for k in own:
        if k in source and k in body and source[k].shape != own[k].shape:
            raise CheckpointError(
                f"{where}: '{k}' has shape {tuple(source[k].shape)} but the model expects {tuple(own[k].shape)}"
            )
    target.load_state_dict({k: source[k] for k in own if k in source and k in body}, strict=False)
    return fresh


def _single_process(rt: Runtime, task: str) -> None:
    if rt.distributed:
        raise ConfigError(f"{task} runs in one process; start it without torchrun")


# --- pretraining ---------------------------------------------------------------------------------


@dataclass
class _Corpus:
    train: list  # texts, or (docstring, code) pairs
    val: list
    tokenizer_text: list[str]  # what the vocabulary is trained on


def _pretrain_corpus(d: PretrainData, seed: int) -> _Corpus:
    if d.corpus == "fortunes":
        held = _load_classify_data(d.topics).held_out()
        texts = fortune_corpus(exclude=held)
        if not 0 < d.val_size < len(texts):
            raise ConfigError(f"data.val_size={d.val_size} must be between 1 and {len(texts) - 1}")
        rng = np.random.default_rng(seed)
        is_val = np.zeros(len(texts), dtype=bool)
        is_val[rng.choice(len(texts), size=d.val_size, replace=False)] = True
        train = [t for t, v in zip(texts, is_val) if not v]
        return _Corpus(train, [t for t, v in zip(texts, is_val) if v], train)
    if d.corpus == "python-code":
        split = code_split(d.code)
        pairs = [(p.query, p.code) for p in split.train]
        val = [(p.query, p.code) for p in split.val]
        return _Corpus(pairs, val, [s for pair in pairs for s in pair])
    raise ConfigError(f"unknown data.corpus '{d.corpus}'; choose from {list(CORPORA)}")


def code_split(c: CodeData) -> CodeSearchSplit:
    """The code-search split of a :class:`CodeData` (training pairs cut to ``max_train``)."""
    split = split_by_package(stdlib_pairs(c.root or None), c.test_size, c.val_size, c.seed)
    if c.max_train:
        split.train = split.train[: c.max_train]
    return split


def _mask(batch: dict, tok: WordPieceTokenizer, vocab: int, lc: PretrainLoss):
    ids, attn = batch["input_ids"], batch["attention_mask"]
    inputs, labels = mask_tokens(
        ids, mask_id=tok.mask_id, vocab_size=vocab, special_ids=sorted(tok.special_ids),
        attention_mask=attn, rate=lc.mask_rate, replace=lc.replace,
    )  # fmt: skip
    return inputs, labels, labels != IGNORE_INDEX


def _mlm_logits(model: nn.Module, inputs, batch, selected) -> torch.Tensor:
    """Masked-LM logits (N, V) at the N selected positions only."""
    h = model(inputs, batch["attention_mask"], batch["token_type_ids"], heads=()).hidden  # (B, T, C)
    return unwrap(model).mlm(h[selected])


def _corrupt(gen: nn.Module, inputs, labels, selected, batch, lc: PretrainLoss):
    """The generator's MLM logits (N, V) and the discriminator's input: masked positions replaced by
    samples, with targets (B, T) = 1 where the token differs from the original."""
    gen_logits = _mlm_logits(gen, inputs, batch, selected)
    ids = batch["input_ids"]
    sampled, _ = replaced_token_detection(
        gen_logits, inputs[selected], labels[selected], ids[selected], temperature=lc.temperature
    )  # the objective's sampling, on the (N,) selected positions
    corrupted = inputs.clone()
    corrupted[selected] = sampled
    return gen_logits, corrupted, (corrupted != ids).float()


def pretrain_loss(objective: str, tok: WordPieceTokenizer, vocab: int, lc: PretrainLoss):
    """The loss of one pretraining step, ``(models, batch) -> (loss, metrics)``; models has
    ``model`` (the encoder / discriminator) and, for electra and codebert, ``generator``."""

    def mlm(models, batch):
        inputs, labels, sel = _mask(batch, tok, vocab, lc)
        return masked_lm_loss(_mlm_logits(models["model"], inputs, batch, sel), labels[sel])

    def electra(models, batch):
        inputs, labels, sel = _mask(batch, tok, vocab, lc)
        gen_logits, corrupted, targets = _corrupt(models["generator"], inputs, labels, sel, batch, lc)
        rtd = models["model"](corrupted, batch["attention_mask"], batch["token_type_ids"], heads=["rtd"]).rtd_logits
        return electra_loss(gen_logits, labels[sel], rtd, targets, batch["attention_mask"], lc.disc_weight)

    def codebert(models, batch):
        enc = models["model"]
        inputs, labels, sel = _mask(batch, tok, vocab, lc)
        enc_mlm, metrics = masked_lm_loss(_mlm_logits(enc, inputs, batch, sel), labels[sel])
        gen_logits, corrupted, targets = _corrupt(models["generator"], inputs, labels, sel, batch, lc)
        rtd = enc(corrupted, batch["attention_mask"], batch["token_type_ids"], heads=["rtd"]).rtd_logits
        rest, more = electra_loss(gen_logits, labels[sel], rtd, targets, batch["attention_mask"], lc.disc_weight)
        return enc_mlm + rest, {**metrics, **more}

    losses = {"mlm": mlm, "electra": electra, "codebert": codebert}
    if objective not in losses:
        raise ConfigError(f"unknown objective '{objective}'; choose from {list(OBJECTIVES)}")
    return losses[objective]


def _pretrain_models(r: PretrainRecipe, vocab: int) -> dict[str, Bert]:
    """The encoder (``model``) and, for electra and codebert, the generator sharing its embeddings."""
    heads = {"mlm": ["mlm"], "electra": ["rtd"], "codebert": ["mlm", "rtd"]}
    cfg = model_config({**r.model, "heads": heads[r.objective]}, vocab_size=vocab)
    if not isinstance(cfg, BertConfig):
        raise ConfigError(f"encoder-pretrain trains a bert model, not {type(cfg).__name__}")
    if r.objective == "mlm":
        return {"model": Bert(cfg)}
    gen_cfg = model_config({**r.generator, "heads": ["mlm"]}, vocab_size=vocab)
    gen, disc = electra_pair(cfg, gen_cfg)
    return {"model": disc, "generator": gen}


@dataclass
class _Pretraining:
    tok: WordPieceTokenizer
    models: dict[str, Bert]
    loss: Callable
    train_set: Tokenized
    val_set: Tokenized


def _setup_pretraining(r: PretrainRecipe, tok: WordPieceTokenizer | None) -> _Pretraining:
    corpus = _pretrain_corpus(r.data, r.train.seed)
    if tok is None:
        tok = _train_or_load_tokenizer(r.data.tokenizer, corpus.tokenizer_text, r.data.vocab_size)
    seed_everything(r.train.seed)
    models = _pretrain_models(r, tok.vocab_size)
    cfg = models["model"].config
    limit = _max_length(r.data.max_length, cfg, "data")
    what = "pairs" if r.data.corpus == "python-code" else "texts"
    train_set = tokenize(tok, corpus.train, limit, r.data.truncation, f"training {what}")
    val_set = tokenize(tok, corpus.val, limit, r.data.truncation, f"validation {what}")
    return _Pretraining(tok, models, pretrain_loss(r.objective, tok, tok.vocab_size, r.loss), train_set, val_set)


def _reference_batch(tok: WordPieceTokenizer, done: Tokenized, t: TrainConfig, bucket: int) -> dict:
    """The first batch a fresh sampler draws (not the training sampler: measuring must not move it)."""
    return next(ShuffledBatches(len(done), t.batch_size, lambda rows: collate(tok, done, rows), seed=t.seed,
                                lengths=_lengths(done), bucket=bucket))  # fmt: skip


def _flops_per_token(loss, models, batch) -> float:
    return measure_flops(loss, models, batch) / batch["input_ids"].numel()


def pretrain_flops_per_token(recipe: dict) -> float:
    """Training FLOPs per padded token of an ``encoder-pretrain`` recipe, measured on its first
    batch without training."""
    r = _pretrain_recipe(recipe)
    p = _setup_pretraining(r, None)
    return _flops_per_token(p.loss, p.models, _reference_batch(p.tok, p.train_set, r.train, r.data.bucket))


def pretrain_steps_for(recipe: dict, train_flops: float) -> int:
    """The step count at which an ``encoder-pretrain`` recipe's training FLOPs (FLOPs per padded
    token x the padded tokens of its batches, as its results.json counts them) come closest to
    ``train_flops``: how two objectives are given equal compute. The recipe's data must be the
    reference run's (same tokenizer, batch size and seed) for the batches to be comparable."""
    r = _pretrain_recipe(recipe)
    p = _setup_pretraining(r, None)
    fpt = _flops_per_token(p.loss, p.models, _reference_batch(p.tok, p.train_set, r.train, r.data.bucket))
    steps, spent = 0, 0.0
    for tokens in _step_tokens(p.train_set, r.train, r.data.bucket):
        if steps and abs(spent + tokens * fpt - train_flops) >= abs(spent - train_flops):
            return steps
        steps, spent = steps + 1, spent + tokens * fpt
    raise AssertionError("unreachable")  # the sampler is endless


def _pretrain_recipe(recipe: dict) -> PretrainRecipe:
    r: PretrainRecipe = from_dict(PretrainRecipe, recipe)
    if r.objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{r.objective}'; choose from {list(OBJECTIVES)}")
    if r.data.corpus not in CORPORA:
        raise ConfigError(f"unknown data.corpus '{r.data.corpus}'; choose from {list(CORPORA)}")
    return r


def pretrain(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
    r = _pretrain_recipe(recipe)
    rt = Runtime.from_env(r.train.device, r.train.dtype)
    _single_process(rt, "encoder-pretrain")
    check_run_dir(run_dir, resume, overwrite)
    log = _log(rt)
    p = _setup_pretraining(r, _run_tokenizer(run_dir) if resume else None)
    models = {k: m.to(rt.device) for k, m in p.models.items()}
    create_run_dir(run_dir, resume, overwrite)
    if not resume:
        p.tok.save(run_dir)
        resolved = {"model": {"family": "bert", **to_dict(models["model"].config)}}
        if "generator" in models:
            resolved["generator"] = {"family": "bert", **to_dict(models["generator"].config)}
        save_yaml(merge(to_dict(r), resolved), run_dir / "config.yaml")
    t = r.train
    optimizer = adamw(nn.ModuleDict(models), t.lr, t.weight_decay, (t.beta1, t.beta2))  # shared weights once
    data = _batches(p.tok, p.train_set, None, t, rt, r.data.bucket)
    val = [{k: v.to(rt.device) for k, v in collate(p.tok, p.val_set, rows).items()}
           for rows in length_sorted_batches(_lengths(p.val_set), t.batch_size)]  # fmt: skip
    val = val[: t.eval_batches] if t.eval_batches else val

    def evaluate(ms):
        rows = [p.loss(ms, batch) for batch in val]  # masks from the trainer's fixed evaluation seed
        out = {"val_loss": sum(float(loss) for loss, _ in rows) / len(rows)}
        for key in rows[0][1]:
            out[f"val_{key}"] = sum(m[key] for _, m in rows) / len(rows)
        return out

    fpt = _flops_per_token(p.loss, models, _reference_batch(p.tok, p.train_set, t, r.data.bucket))
    trainer = Trainer(models, {"model": optimizer}, [Phase(p.loss)], rt, t, run_dir=run_dir, evaluate=evaluate,
                      count=_real_tokens)  # fmt: skip
    if resume:
        trainer.resume(find_checkpoint(run_dir / "checkpoints", "last"), data)
        log(f"resumed {run_dir} at step {trainer.step}")
    n_params = sum(q.numel() for q in nn.ModuleDict(models).parameters())
    log(
        f"encoder-pretrain ({r.objective}) {n_params / 1e6:.2f}M parameters | {len(p.train_set):,} train / "
        f"{len(p.val_set):,} val {r.data.corpus} sequences | vocab {p.tok.vocab_size} | "
        f"{fpt / 1e6:.1f} MFLOP per token | {rt.describe()} | {run_dir}"
    )
    trainer.fit(data)
    if trainer.stop_reason != "interrupted":
        tokens = padded_tokens(p.train_set, t, r.data.bucket, trainer.step)
        results = {"objective": r.objective, "corpus": r.data.corpus, "steps": trainer.step,
                   "batch_size": t.batch_size * t.grad_accum, "tokens": tokens, "flops_per_token": fpt,
                   "train_flops": fpt * tokens, "train_seconds": trainer.elapsed, "parameters": n_params,
                   "encoder_parameters": models["model"].num_params(), "best_val_loss": trainer.best,
                   **{k: v for k, v in trainer.history[-1].items() if k.startswith("val_")}}  # fmt: skip
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
        log(f"pretrained {trainer.step} steps, {tokens:,} tokens, {fpt * tokens:.3g} FLOPs in {trainer.elapsed:.0f}s")
    rt.close()
    return trainer


def _run_tokenizer(run_dir: Path | str) -> WordPieceTokenizer:
    """The WordPiece tokenizer saved in a folder (a run directory), or MiniLM's for ``minilm``."""
    from genlab.recipes.embed import MINILM, minilm_dir
    from genlab.tokenizers import load_tokenizer

    tok = load_tokenizer(minilm_dir() if str(run_dir) == MINILM else Path(run_dir))
    if not isinstance(tok, WordPieceTokenizer):
        raise TokenizerError(f"{run_dir} has a {tok.kind} tokenizer; an encoder needs a WordPiece tokenizer")
    return tok


def _train_or_load_tokenizer(name: str, texts: list[str], vocab_size: int) -> WordPieceTokenizer:
    """A WordPiece vocabulary learnt from ``texts``, or the one saved at ``name``. Training is not
    deterministic (Hugging Face tokenizers breaks ties in hash-map order, tokenizers#1794): runs to
    be compared token for token should share one tokenizer."""
    return _run_tokenizer(name) if name else WordPieceTokenizer.train(texts, vocab_size=vocab_size)


# --- classification ------------------------------------------------------------------------------


def _finetune_config(r, over: dict, vocab: int | None, source: BertConfig | None, default: dict):
    """The model of a fine-tuning run (``r.model`` with ``over``): for ``init: scratch`` the
    architecture ``r.model`` names (``default`` if none), else the source's with only FINETUNE_FIELDS changed."""
    if source is None:
        base = {} if {"preset", "family"} & set(r.model) else default
        return model_config({**base, **r.model, **over}, vocab_size=vocab)
    extra = [k for k in r.model if k not in FINETUNE_FIELDS]
    if extra:
        raise ConfigError(
            f"model.{extra[0]} comes with the weights of init={r.init}; a fine-tuning run may set only "
            f"{', '.join('model.' + k for k in FINETUNE_FIELDS)}"
        )
    return from_dict(BertConfig, merge(to_dict(source), {**r.model, **over}), "model")


def _finetune_start(r, run_dir: Path, resume: bool, texts: Callable[[], list[str]], over: dict, default: dict):
    """(tokenizer, model config, encoder weights to start from or None) of a fine-tuning run: the
    run's own when resuming; for ``init: scratch`` a vocabulary trained on ``texts()`` (or
    ``data.tokenizer``) and the architecture of :func:`_finetune_config`; else ``init``'s."""
    init_state = None
    if resume:
        tok = _run_tokenizer(run_dir)
        cfg = model_config(read_run_config(run_dir)["model"])  # the resolved model the run started with
    elif r.init == SCRATCH:
        tok = _train_or_load_tokenizer(r.data.tokenizer, texts(), r.data.vocab_size)
        cfg = _finetune_config(r, over, tok.vocab_size, None, default)
    else:
        source = load_encoder(r.init, r.checkpoint)
        tok, init_state = source.tokenizer, source.model.state_dict()
        cfg = _finetune_config(r, over, None, source.model.config, default)
    if not isinstance(cfg, BertConfig):
        raise ConfigError(f"{r.task} trains a bert model, not {type(cfg).__name__}")
    if tok.vocab_size != cfg.vocab_size:
        raise TokenizerError(f"{run_dir}: the tokenizer has {tok.vocab_size:,} tokens but the model "
                             f"{cfg.vocab_size:,}: they do not belong together")  # fmt: skip
    return tok, cfg, init_state


def classifier_logits(model: Bert, tok: WordPieceTokenizer, done: Tokenized, batch_size: int = 64) -> torch.Tensor:
    """Logits (N, K) of a tokenized set, in its order (batches of similar length, eval mode is the caller's)."""
    device = next(model.parameters()).device
    out = torch.empty(len(done), model.config.num_labels)
    with torch.inference_mode():
        for rows in length_sorted_batches(_lengths(done), batch_size):
            b = {k: v.to(device) for k, v in collate(tok, done, rows).items()}
            logits = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], heads=["sequence"]).logits
            out[torch.from_numpy(rows)] = logits.float().cpu()
    return out


def _scores(logits: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    y = torch.from_numpy(labels)
    return {"loss": F.cross_entropy(logits, y).item(), "accuracy": (logits.argmax(-1) == y).double().mean().item()}


def classify_loss(models: dict, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    logits = models["model"](batch["input_ids"], batch["attention_mask"], heads=["sequence"]).logits.float()
    loss = F.cross_entropy(logits, batch["labels"])
    return loss, {"train_accuracy": (logits.argmax(-1) == batch["labels"]).float().mean().item()}


def train_classifier(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
    r: ClassifyRecipe = from_dict(ClassifyRecipe, recipe)
    rt = Runtime.from_env(r.train.device, r.train.dtype)
    check_run_dir(run_dir, resume, overwrite)
    log = _log(rt)
    ds = _load_classify_data(r.data)
    K = len(ds.classes)
    over = {"heads": ["sequence"], "num_labels": K}
    tok, cfg, init_state = _finetune_start(r, run_dir, resume, lambda: ds.train.texts, over, {"preset": "bert-mini"})
    limit = _max_length(r.data.max_length, cfg, "data")
    sets = {name: tokenize(tok, getattr(ds, name).texts, limit, r.data.truncation, f"{name} texts")
            for name in ("train", "val", "test")}  # fmt: skip
    rt.barrier()
    if rt.is_main:
        create_run_dir(run_dir, resume, overwrite)
    seed_everything(r.train.seed)
    model = Bert(cfg)
    fresh = transfer_encoder(model, init_state, r.init) if init_state is not None else []
    model = rt.wrap(model)
    if rt.is_main and not resume:
        tok.save(run_dir)
        save_yaml(merge(to_dict(r), {"model": {"family": "bert", **to_dict(cfg)}}), run_dir / "config.yaml")
    t = r.train
    data = _batches(tok, sets["train"], ds.train.labels, t, rt, r.data.bucket)

    def evaluate(ms):
        s = _scores(classifier_logits(unwrap(ms["model"]), tok, sets["val"], t.batch_size), ds.val.labels)
        return {"val_loss": s["loss"], "val_accuracy": s["accuracy"], "val_error": 1.0 - s["accuracy"]}

    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(classify_loss)], rt, t, run_dir=run_dir,
                      evaluate=evaluate, count=_real_tokens)  # fmt: skip
    if resume:
        trainer.resume(find_checkpoint(run_dir / "checkpoints", "last"), data)
        log(f"resumed {run_dir} at step {trainer.step}")
    n_params = sum(q.numel() for q in model.parameters())
    fresh_parts = ", ".join(sorted({k.split(".")[0] for k in fresh})) or "none"
    start = "random weights" if r.init == SCRATCH else f"{r.init} (new: {fresh_parts})"
    sizes = f"{len(ds.train):,} train / {len(ds.val):,} val / {len(ds.test):,} test fortunes"
    log(f"encoder-classify {n_params / 1e6:.2f}M parameters from {start} | {K} topics | {sizes} | "
        f"vocab {tok.vocab_size} | {rt.describe()} | {run_dir}")  # fmt: skip
    trainer.fit(data)
    if rt.is_main and trainer.stop_reason != "interrupted":
        test = evaluate_classifier(run_dir)
        results = {"init": r.init, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
                   "classes": ds.classes, "steps": trainer.step, "train_seconds": trainer.elapsed,
                   "parameters": n_params, "best_val_loss": trainer.best}  # fmt: skip
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
        log(f"test accuracy {test['accuracy']:.4f} over {K} topics (best checkpoint) after {trainer.elapsed:.0f}s")
    rt.close()
    return trainer


def _classifier_run(run_dir: Path, which: str) -> tuple[Encoder, TopicData]:
    recipe = read_run_config(run_dir)
    task = recipe.get("task", "lm")
    if task not in ("encoder-classify", "encoder-distill"):
        raise ConfigError(
            f"{run_dir} is a '{task}' run, not a fortune-topic classifier (encoder-classify or encoder-distill)"
        )
    enc = load_encoder(run_dir, which)
    if "sequence" not in enc.model.config.heads:
        raise ConfigError(f"{run_dir}: the model has no sequence-classification head")
    return enc, from_dict(TopicData, recipe.get("data") or {}, "data")


def evaluate_classifier(run_dir: Path, which: str = "best", split: str = "test", limit: int = 0,
                        batch_size: int = 64) -> dict:  # fmt: skip
    """Accuracy and mean cross-entropy of a classifier run on its split (``test`` or ``val``)."""
    enc, d = _classifier_run(Path(run_dir), which)
    ds = _load_classify_data(d)
    if split not in ("test", "val"):
        raise ConfigError(f"split must be 'test' or 'val', got {split!r}")
    part = getattr(ds, split)
    texts, labels = (part.texts[:limit], part.labels[:limit]) if limit else (part.texts, part.labels)
    if enc.model.config.num_labels != len(ds.classes):
        raise ConfigError(f"{run_dir}: the model has {enc.model.config.num_labels} classes, its data {len(ds.classes)}")
    done = tokenize(enc.tokenizer, texts, _max_length(d.max_length, enc.model.config, "data"), "warn", "texts")
    s = _scores(classifier_logits(enc.model, enc.tokenizer, done, batch_size), labels)
    return {"task": "classify", "split": split, "accuracy": s["accuracy"], "loss": s["loss"], "n": len(texts),
            "classes": len(ds.classes)}  # fmt: skip


# --- distillation ----------------------------------------------------------------------------------


def distill_loss(teacher: Bert, lc: DistillLoss):
    def loss(models, batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with torch.no_grad():
            t_out = teacher(ids, mask, heads=["sequence"])
        s_out = models["model"](ids, mask, heads=["sequence"])
        total, metrics = distillation_loss(
            s_out.logits, t_out.logits, batch["labels"], s_out.hidden, t_out.hidden, mask,
            temperature=lc.temperature, alpha_ce=lc.alpha_soft, alpha_mlm=lc.alpha_hard, alpha_cos=lc.alpha_cos,
        )  # fmt: skip
        return total, metrics

    return loss


def time_inference(models: dict[str, Bert], tok, done: Tokenized, batch_size: int, repeats: int) -> dict[str, float]:
    """Seconds per pass over ``done`` of each model: the fastest of ``repeats`` passes, the models
    alternating so that a change in the machine's load affects both alike."""
    best = {k: math.inf for k in models}
    for _ in range(max(repeats, 1)):
        for name, model in models.items():
            start = time.perf_counter()
            classifier_logits(model, tok, done, batch_size)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def distill(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
    r: DistillRecipe = from_dict(DistillRecipe, recipe)
    rt = Runtime.from_env(r.train.device, r.train.dtype)
    _single_process(rt, "encoder-distill")
    check_run_dir(run_dir, resume, overwrite)
    log = _log(rt)
    teacher_enc, d = _classifier_run(Path(r.teacher), r.checkpoint)
    teacher, tok = teacher_enc.model.to(rt.device).eval(), teacher_enc.tokenizer
    teacher.requires_grad_(False)
    tc = teacher.config
    n_student = r.student_layers or max(tc.n_layer // 2, 1)
    if resume:
        cfg = model_config(read_run_config(run_dir)["model"])  # the resolved model the run started with
    else:
        cfg = dataclasses.replace(tc, n_layer=n_student)
    ds = _load_classify_data(d)
    limit = _max_length(d.max_length, cfg, "data")
    sets = {name: tokenize(tok, getattr(ds, name).texts, limit, d.truncation, f"{name} texts")
            for name in ("train", "val", "test")}  # fmt: skip
    create_run_dir(run_dir, resume, overwrite)
    seed_everything(r.train.seed)
    student = Bert(cfg)
    if not resume:
        state = init_student_from_teacher(teacher.state_dict(), tc.n_layer, n_student, r"^blocks\.(\d+)\.")
        student.load_state_dict(state)
        tok.save(run_dir)
        save_yaml(merge(to_dict(r), {"model": {"family": "bert", **to_dict(cfg)}, "data": to_dict(d)}),
                  run_dir / "config.yaml")  # fmt: skip
    student = student.to(rt.device)
    t = r.train
    data = _batches(tok, sets["train"], ds.train.labels, t, rt, d.bucket)

    def evaluate(ms):
        s = _scores(classifier_logits(ms["model"], tok, sets["val"], t.batch_size), ds.val.labels)
        return {"val_loss": s["loss"], "val_accuracy": s["accuracy"], "val_error": 1.0 - s["accuracy"]}

    optimizer = adamw(student, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": student}, {"model": optimizer}, [Phase(distill_loss(teacher, r.loss))], rt, t,
                      run_dir=run_dir, evaluate=evaluate, count=_real_tokens)  # fmt: skip
    if resume:
        trainer.resume(find_checkpoint(run_dir / "checkpoints", "last"), data)
        log(f"resumed {run_dir} at step {trainer.step}")
    log(f"encoder-distill: student {n_student} of {tc.n_layer} layers ({student.num_params() / 1e6:.2f}M vs "
        f"{teacher.num_params() / 1e6:.2f}M parameters) of {r.teacher} | {rt.describe()} | {run_dir}")  # fmt: skip
    trainer.fit(data)
    if trainer.stop_reason != "interrupted":
        best = load_encoder(run_dir, "best").model.to(rt.device)
        acc = {name: _scores(classifier_logits(m, tok, sets["test"], r.speed.batch_size), ds.test.labels)["accuracy"]
               for name, m in (("teacher", teacher), ("student", best))}  # fmt: skip
        secs = time_inference({"teacher": teacher, "student": best}, tok, sets["test"], r.speed.batch_size,
                              r.speed.repeats)  # fmt: skip
        results = {"teacher": r.teacher, "teacher_layers": tc.n_layer, "student_layers": n_student,
                   "teacher_test_accuracy": acc["teacher"], "test_accuracy": acc["student"],
                   "accuracy_retained": acc["student"] / max(acc["teacher"], 1e-12),
                   "teacher_seconds": secs["teacher"], "student_seconds": secs["student"],
                   "speedup": secs["teacher"] / secs["student"], "speed_batch_size": r.speed.batch_size,
                   "threads": torch.get_num_threads(), "test_texts": len(ds.test), "steps": trainer.step,
                   "train_seconds": trainer.elapsed, "teacher_parameters": teacher.num_params(),
                   "parameters": best.num_params()}  # fmt: skip
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
        log(f"student {acc['student']:.4f} vs teacher {acc['teacher']:.4f} test accuracy "
            f"({100 * results['accuracy_retained']:.1f}% retained), {results['speedup']:.2f}x faster")  # fmt: skip
    rt.close()
    return trainer


# --- retrieval fine-tuning ---------------------------------------------------------------------------


def retrieval_loss(temperature: float):
    """Docstrings and codes embedded apart by the one encoder; each docstring's code among the batch."""

    def loss(models, batch):
        m, q, c = models["model"], batch["query"], batch["code"]
        return info_nce(m.embed(q["input_ids"], q["attention_mask"]), m.embed(c["input_ids"], c["attention_mask"]),
                        temperature)  # fmt: skip

    return loss


def train_retrieval(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
    r: RetrievalRecipe = from_dict(RetrievalRecipe, recipe)
    rt = Runtime.from_env(r.train.device, r.train.dtype)
    _single_process(rt, "encoder-retrieval")
    check_run_dir(run_dir, resume, overwrite)
    log = _log(rt)
    split = code_split(r.data.code)
    texts = lambda: [s for p in split.train for s in (p.query, p.code)]
    tok, cfg, init_state = _finetune_start(r, run_dir, resume, texts, {"heads": []},
                                           {"preset": "bert-mini", "pooler": False})  # fmt: skip
    limit = _max_length(r.data.max_length, cfg, "data")
    queries = tokenize(tok, [p.query for p in split.train], limit, r.data.truncation, "training docstrings")
    codes = tokenize(tok, [p.code for p in split.train], limit, r.data.truncation, "training codes")
    create_run_dir(run_dir, resume, overwrite)
    seed_everything(r.train.seed)
    model = Bert(cfg)
    fresh = transfer_encoder(model, init_state, r.init) if init_state is not None else []
    model = model.to(rt.device)
    if not resume:
        tok.save(run_dir)
        save_yaml(merge(to_dict(r), {"model": {"family": "bert", **to_dict(cfg)}}), run_dir / "config.yaml")
    t = r.train
    data = ShuffledBatches(
        len(split.train), t.batch_size, lambda rows: {"query": collate(tok, queries, rows),
                                                     "code": collate(tok, codes, rows)},
        seed=t.seed, lengths=_lengths(codes), bucket=r.data.bucket,
    )  # fmt: skip

    def evaluate(ms):  # the best checkpoint is the highest validation MRR
        m = code_search(Encoder(ms["model"], tok, limit, str(run_dir)), split.val, r.eval_batch_size, limit)
        return {"val_loss": 1.0 - m["mrr"], "val_mrr": m["mrr"], "val_recall@10": m["recall@10"]}

    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(retrieval_loss(r.temperature))], rt, t,
                      run_dir=run_dir, evaluate=evaluate,
                      count=lambda b: _real_tokens(b["query"]) + _real_tokens(b["code"]))  # fmt: skip
    if resume:
        trainer.resume(find_checkpoint(run_dir / "checkpoints", "last"), data)
        log(f"resumed {run_dir} at step {trainer.step}")
    start = "random weights" if r.init == SCRATCH else f"{r.init}" + (" (new pooler)" if fresh else "")
    log(f"encoder-retrieval {model.num_params() / 1e6:.2f}M parameters from {start} | {len(split.train):,} train / "
        f"{len(split.val):,} val / {len(split.test):,} test pairs | vocab {tok.vocab_size} | {rt.describe()} | "
        f"{run_dir}")  # fmt: skip
    trainer.fit(data)
    if trainer.stop_reason != "interrupted":
        test = code_search(load_encoder(run_dir, "best"), split.test, r.eval_batch_size, limit)
        results = {"init": r.init, **{f"test_{k}": v for k, v in test.items() if k in ("mrr", "recall@1", "recall@5",
                   "recall@10")}, "candidates": test["candidates"], "steps": trainer.step,
                   "train_seconds": trainer.elapsed, "parameters": model.num_params(),
                   "best_val_mrr": 1.0 - trainer.best}  # fmt: skip
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
        log(f"test MRR {test['mrr']:.4f}, recall@10 {test['recall@10']:.3f} over {test['candidates']} functions "
            f"(best checkpoint) after {trainer.elapsed:.0f}s")  # fmt: skip
    rt.close()
    return trainer


# --- evaluation ------------------------------------------------------------------------------------


def code_search(
    encoder: Encoder, pairs: Sequence[CodePair], batch_size: int = 64, max_length: int | None = None
) -> dict:
    """Rank every code of ``pairs`` for each docstring query by the cosine of their mean-pooled,
    normalised embeddings; MRR and recall@1/5/10 (query i's right answer is code i)."""
    if not pairs:
        raise ConfigError("no code-search pairs to rank")
    limit = min(CODE_SEARCH_MAX_LENGTH, encoder.max_length) if max_length is None else max_length
    q, _ = embed_texts(encoder, [p.query for p in pairs], batch_size, limit, True, name="query")
    c, cut = embed_texts(encoder, [p.code for p in pairs], batch_size, limit, True, name="code")
    scores = torch.from_numpy(q) @ torch.from_numpy(c).T  # (Q, N) cosines: the rows are unit vectors
    metrics = ranking_metrics(scores, torch.arange(len(pairs)), ks=(1, 5, 10))
    return {"task": "code-search", "model": encoder.source, **metrics, "candidates": len(pairs),
            "max_length": limit, "truncated_codes": len(cut)}  # fmt: skip


def is_encoder_run(model: str | Path) -> bool:
    """True for ``minilm`` and for run directories of the encoder tasks (``genlab eval`` dispatch)."""
    path = Path(model)
    if str(model) == "minilm":
        return True
    cfg = path / "config.yaml"
    return cfg.is_file() and read_run_config(path).get("task") in ENCODER_TASKS


def evaluate(
    model: str | Path,
    task: str | None = None,
    which: str = "best",
    limit: int = 0,
    batch_size: int = 64,
    max_length: int | None = None,
    code: CodeData | None = None,
) -> dict:
    """``genlab eval`` for encoders: ``classify`` (a classifier run on its test split) or
    ``code-search`` (``minilm``, any bert run or Hugging Face BERT folder on the stdlib test split;
    a pretraining run on code uses its own split settings)."""
    path = Path(model)
    recipe = read_run_config(path) if (path / "config.yaml").is_file() else {}
    run_task = recipe.get("task")
    if task is None:
        task = {"encoder-classify": "classify", "encoder-distill": "classify"}.get(run_task, "code-search")
    if task not in EVAL_TASKS:
        raise ConfigError(f"unknown evaluation task '{task}'; choose from {list(EVAL_TASKS)}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if task == "classify":
        return evaluate_classifier(path, which, limit=limit, batch_size=batch_size)
    if recipe:
        family = (recipe.get("model") or {}).get("family")
        if family != "bert":
            raise ConfigError(
                f"{path} is a {family or 'non-model'} run (task {run_task or 'lm'}); code search embeds with a "
                "bert encoder: give a bert run directory, a Hugging Face BERT folder or 'minilm'"
            )
        if code is None and run_task in ("encoder-pretrain", "encoder-retrieval"):
            code = from_dict(CodeData, (recipe.get("data") or {}).get("code") or {}, "data.code")
    pairs = code_split(code or CodeData()).test
    try:
        encoder = load_encoder(model, which)
    except GenlabError as e:
        raise type(e)(str(e).replace("genlab embed", "code search")) from e
    return code_search(encoder, pairs[:limit] if limit else pairs, batch_size, max_length)
