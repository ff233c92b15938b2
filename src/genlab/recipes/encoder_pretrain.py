"""Encoder pretraining (task ``encoder-pretrain``): MLM, ELECTRA or CodeBERT on a ``data.corpus``.

The corpora (``fortunes``: every fortune minus the topic task's val/test texts; ``python-code``:
the training packages' bimodal (docstring, code) pairs) are :func:`genlab.data.corpora.pretrain_corpus`;
the losses, with dynamic masking, are :func:`genlab.objectives.pretraining.pretrain_loss`. A
WordPiece vocabulary is trained on the training texts (or ``data.tokenizer`` names one).

ELECTRA and CodeBERT train a small generator sharing the encoder's embeddings
(:func:`genlab.models.bert.electra_pair`); the checkpoint holds ``model`` (the encoder, for
ELECTRA the discriminator) and ``generator``: ``genlab.runs.load_run(run)`` returns the encoder,
``load_run(run, part="generator")`` the generator.

Compute: ``results.json`` has ``flops_per_token`` (FLOPs of one training step counted by
``torch.utils.flop_counter`` on a reference batch, forward and backward, divided by its padded
tokens), ``tokens`` (padded tokens of all steps), ``train_flops`` and the MFU of the run: runs
compared "at equal compute" are given step counts that make ``train_flops`` equal
(:func:`pretrain_steps_for`; :func:`pretrain_flops_per_token` measures it before training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from genlab.core.config import from_dict, merge, to_dict
from genlab.core.errors import ConfigError
from genlab.core.seed import seed_everything
from genlab.data.corpora import CORPORA, CodeData, TopicData, pretrain_corpus
from genlab.data.tokenized import (
    eval_batches,
    padded_tokens,
    real_tokens,
    reference_batch,
    shuffled_batches,
    step_tokens,
    token_limit,
    tokenize,
)
from genlab.eval.anomaly import auroc
from genlab.models.bert import Bert, BertConfig, electra_pair
from genlab.objectives.electra import token_identity_bound
from genlab.objectives.pretraining import (
    OBJECTIVES,
    PretrainLoss,
    init_detection,
    pretrain_loss,
    pretrain_scored_loss,
)
from genlab.recipes import runner
from genlab.runs import model_config
from genlab.runs.encoders import wordpiece_tokenizer
from genlab.runs.finetune import train_or_load_tokenizer
from genlab.tokenizers import WordPieceTokenizer
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.flops import measure_flops
from genlab.training.optim import adamw


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
class PretrainRecipe:
    task: str = "encoder-pretrain"
    objective: str = "mlm"  # mlm | electra | codebert
    model: dict = field(default_factory=lambda: {"preset": "bert-mini", "pooler": False})  # the encoder
    generator: dict = field(default_factory=lambda: {"preset": "electra-mini-generator"})  # electra, codebert
    data: PretrainData = field(default_factory=PretrainData)
    loss: PretrainLoss = field(default_factory=PretrainLoss)
    train: TrainConfig = field(default_factory=TrainConfig)


def _configs(r: PretrainRecipe, vocab: int) -> dict[str, BertConfig]:
    """The encoder's config (``model``) and, for electra and codebert, the generator's."""
    heads = {"mlm": ["mlm"], "electra": ["rtd"], "codebert": ["mlm", "rtd"]}
    cfg = model_config({**r.model, "heads": heads[r.objective]}, vocab_size=vocab)
    if not isinstance(cfg, BertConfig):
        raise ConfigError(f"encoder-pretrain trains a bert model, not {type(cfg).__name__}")
    if r.objective == "mlm":
        return {"model": cfg}
    return {"model": cfg, "generator": model_config({**r.generator, "heads": ["mlm"]}, vocab_size=vocab)}


def _models(configs: dict[str, BertConfig], lc: PretrainLoss) -> dict[str, Bert]:
    """The encoder (``model``) and, for electra and codebert, the generator sharing its embeddings;
    the encoder's rtd head starts at the prior log-odds of a replacement (``loss.prior_init``)."""
    if "generator" not in configs:
        return {"model": Bert(configs["model"])}
    gen, disc = electra_pair(configs["model"], configs["generator"])
    init_detection(disc, lc)
    return {"model": disc, "generator": gen}


@dataclass
class _Pretraining:
    tok: WordPieceTokenizer
    configs: dict[str, BertConfig]
    loss: Callable
    scored_loss: Callable  # the loss with the discriminator's scores, for the validation
    train_set: object  # Tokenized
    val_set: object


def _setup(r: PretrainRecipe, tok: WordPieceTokenizer | None) -> _Pretraining:
    corpus = pretrain_corpus(r.data.corpus, r.data.val_size, r.data.topics, r.data.code, r.train.seed)
    if tok is None:
        tok = train_or_load_tokenizer(r.data.tokenizer, corpus.tokenizer_text, r.data.vocab_size)
    configs = _configs(r, tok.vocab_size)
    limit = token_limit(r.data.max_length, configs["model"].block_size, "data")
    what = "pairs" if r.data.corpus == "python-code" else "texts"
    train_set = tokenize(tok, corpus.train, limit, r.data.truncation, f"training {what}")
    val_set = tokenize(tok, corpus.val, limit, r.data.truncation, f"validation {what}")
    args = (r.objective, tok.mask_id, tok.special_ids, tok.vocab_size, r.loss)
    return _Pretraining(tok, configs, pretrain_loss(*args), pretrain_scored_loss(*args), train_set, val_set)


def detection_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """The discriminator over a validation's pooled positions: ``val_disc_auroc`` (replaced vs
    original tokens ranked by the rtd logit, ties count one half; 0.5 is chance, whatever the base
    rate), ``val_disc_recall`` (share of replaced tokens with logit > 0) and ``val_disc_base_rate``
    (the accuracy of always answering "original"). AUROC is NaN when one class is absent."""
    replaced = targets > 0
    n = int(replaced.sum())
    both = 0 < n < replaced.numel()
    return {
        "val_disc_auroc": auroc(logits.cpu(), replaced.cpu()) if both else float("nan"),
        "val_disc_recall": float(((logits > 0) & replaced).sum()) / max(n, 1),
        "val_disc_base_rate": 1.0 - n / max(replaced.numel(), 1),
    }


def identity_bound(p: _Pretraining, lc: PretrainLoss) -> dict[str, float]:
    """``val_disc_identity_auroc``: the AUROC a discriminator that sees only the token (no context)
    reaches at best against a unigram-stage generator at the run's temperature and mask rate, from
    the training texts' token counts (:func:`genlab.objectives.electra.token_identity_bound`). A
    validation AUROC above it is context learnt; at temperature 1 it is ~0.5."""
    ids = torch.cat([torch.as_tensor(s, dtype=torch.long) for s in p.train_set.ids])  # every training token
    counts = torch.bincount(ids, minlength=p.tok.vocab_size).double()
    counts[torch.tensor([*p.tok.special_ids, p.tok.mask_id])] = 0  # never replaced
    return {"val_disc_identity_auroc": token_identity_bound(counts, lc.mask_rate, lc.temperature)["auroc"]}


def _flops_per_token(p: _Pretraining, models: dict, t: TrainConfig, bucket: int) -> float:
    batch = reference_batch(p.tok, p.train_set, t.batch_size, t.seed, bucket)
    return measure_flops(p.loss, models, batch) / batch["input_ids"].numel()


def _measured(recipe: dict) -> tuple[PretrainRecipe, _Pretraining, float]:
    r = _recipe(recipe)
    p = _setup(r, None)
    seed_everything(r.train.seed)
    return r, p, _flops_per_token(p, _models(p.configs, r.loss), r.train, r.data.bucket)


def pretrain_flops_per_token(recipe: dict) -> float:
    """Training FLOPs per padded token of an ``encoder-pretrain`` recipe, measured on its first
    batch without training."""
    return _measured(recipe)[2]


def pretrain_steps_for(recipe: dict, train_flops: float) -> int:
    """The step count at which an ``encoder-pretrain`` recipe's training FLOPs (FLOPs per padded
    token x the padded tokens of its batches, as its results.json counts them) come closest to
    ``train_flops``: how two objectives are given equal compute. The recipe's data must be the
    reference run's (same tokenizer, batch size and seed) for the batches to be comparable."""
    r, p, fpt = _measured(recipe)
    t = r.train
    steps, spent = 0, 0.0
    for tokens in step_tokens(p.train_set, t.batch_size, t.seed, r.data.bucket, t.grad_accum):
        if steps and abs(spent + tokens * fpt - train_flops) >= abs(spent - train_flops):
            return steps
        steps, spent = steps + 1, spent + tokens * fpt
    raise AssertionError("unreachable")  # the sampler is endless


def _check(r: PretrainRecipe) -> None:
    if r.objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{r.objective}'; choose from {list(OBJECTIVES)}")
    if r.data.corpus not in CORPORA:
        raise ConfigError(f"unknown data.corpus '{r.data.corpus}'; choose from {list(CORPORA)}")


def _recipe(recipe: dict) -> PretrainRecipe:
    r: PretrainRecipe = from_dict(PretrainRecipe, recipe)
    _check(r)
    return r


def _prepare(r: PretrainRecipe, s: runner.Session) -> runner.Setup:
    rt, t = s.rt, r.train
    p = _setup(r, wordpiece_tokenizer(s.run_dir) if s.resume else None)
    resolved = {name: {"family": "bert", **to_dict(cfg)} for name, cfg in p.configs.items()}
    s.start(merge(to_dict(r), resolved), p.tok)
    models = {k: m.to(rt.device) for k, m in _models(p.configs, r.loss).items()}
    optimizer = adamw(nn.ModuleDict(models), t.lr, t.weight_decay, (t.beta1, t.beta2))  # shared weights once
    data = shuffled_batches(p.tok, p.train_set, None, t.batch_size, t.seed, r.data.bucket, rt.rank, rt.world_size)
    val = eval_batches(p.tok, p.val_set, t.batch_size, rt.device, t.eval_batches)
    bound = identity_bound(p, r.loss) if r.objective != "mlm" else {}

    def evaluate(ms):
        rows = [p.scored_loss(ms, batch) for batch in val]  # masks from the trainer's fixed evaluation seed
        out = {"val_loss": sum(float(loss) for loss, _, _ in rows) / len(rows)}
        for key in rows[0][1]:
            out[f"val_{key}"] = sum(float(m[key]) for _, m, _ in rows) / len(rows)
        if rows[0][2] is not None:
            out.update(detection_metrics(*(torch.cat(part) for part in zip(*(d for _, _, d in rows)))), **bound)
        return out

    fpt = _flops_per_token(p, models, t, r.data.bucket)
    trainer = Trainer(models, {"model": optimizer}, [Phase(p.loss)], rt, t, run_dir=s.run_dir, evaluate=evaluate,
                      count=real_tokens)  # fmt: skip
    n_params = sum(q.numel() for q in nn.ModuleDict(models).parameters())
    tokens = lambda steps: padded_tokens(p.train_set, t.batch_size, t.seed, r.data.bucket, steps, t.grad_accum)

    def finish(trainer: Trainer) -> dict:
        n = tokens(trainer.step)
        s.log(f"pretrained {trainer.step} steps, {n:,} tokens, {fpt * n:.3g} FLOPs in {trainer.elapsed:.0f}s")
        return {"objective": r.objective, "corpus": r.data.corpus, "steps": trainer.step,
                "batch_size": t.batch_size * t.grad_accum, "tokens": n, "flops_per_token": fpt,
                "train_flops": fpt * n, "train_seconds": trainer.elapsed, "parameters": n_params,
                "encoder_parameters": models["model"].num_params(), "best_val_loss": trainer.best,
                **{k: v for k, v in trainer.history[-1].items() if k.startswith("val_")}}  # fmt: skip

    sizes = (f"{r.objective} | {len(p.train_set):,} train / {len(p.val_set):,} val {r.data.corpus} sequences | "
             f"vocab {p.tok.vocab_size} | {fpt / 1e6:.1f} MFLOP per token")  # fmt: skip
    return runner.Setup(trainer, data, n_params, sizes, lambda: fpt, tokens, finish)


pretrain = runner.entry_point("encoder-pretrain", PretrainRecipe, _prepare, single_process=True, check=_check)
