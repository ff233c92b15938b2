"""Encoder fine-tuning for code search (task ``encoder-retrieval``): a bi-encoder on docstring/code pairs.

The docstring and the code of the training packages' pairs (:func:`genlab.data.corpora.code_split`)
are embedded apart by the one encoder (mean-pooled, normalised) and each docstring must pick its
code among the batch (in-batch InfoNCE, :func:`genlab.objectives.contrastive.info_nce`), the
fine-tuning CodeBERT's paper scores code search with. ``init`` as for ``encoder-classify``
(:mod:`genlab.runs.finetune`). Every evaluation ranks the validation functions
(:func:`genlab.eval.retrieval.code_search`); the best checkpoint is the highest validation MRR
(``train.best_metric: val_mrr``, ``train.best_mode: max``), and ``results.json`` has its test
MRR and recall@k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genlab.core.config import merge, to_dict
from genlab.core.errors import ConfigError
from genlab.data.batches import ShuffledBatches
from genlab.data.corpora import CodeData, code_split
from genlab.data.tokenized import collate, lengths, real_tokens, reference_batch, token_limit, tokenize
from genlab.eval.embeddings import sentence_embeddings
from genlab.eval.retrieval import CODE_SEARCH_MAX_LENGTH, code_search
from genlab.models.bert import Bert, transfer_encoder
from genlab.objectives.contrastive import info_nce
from genlab.recipes import runner
from genlab.runs.encoders import Encoder, load_encoder
from genlab.runs.finetune import SCRATCH, finetune_start
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw


@dataclass
class RetrievalData:
    code: CodeData = field(default_factory=CodeData)
    max_length: int = CODE_SEARCH_MAX_LENGTH  # tokens per docstring and per code (code search's limit)
    truncation: str = "warn"
    vocab_size: int = 8192  # init: scratch: a WordPiece vocabulary trained on the training pairs
    tokenizer: str = ""  # init: scratch: or a folder with tokenizer.json, minilm
    bucket: int = 50  # training batches drawn together and sorted by code length; 0: off


RANKING_METRICS = ("val_mrr", "val_recall@10")  # what the evaluation returns: higher is better


def _train_config() -> TrainConfig:
    return TrainConfig(best_metric="val_mrr", best_mode="max")


@dataclass
class RetrievalRecipe:
    task: str = "encoder-retrieval"
    init: str = SCRATCH  # scratch | minilm | a bert run directory | a Hugging Face BERT folder
    checkpoint: str = "best"
    model: dict = field(default_factory=dict)  # scratch: the architecture (default preset bert-mini)
    data: RetrievalData = field(default_factory=RetrievalData)
    temperature: float = 0.05  # of the in-batch softmax over cosines
    eval_batch_size: int = 64
    train: TrainConfig = field(default_factory=_train_config)  # the best checkpoint: the highest val_mrr


def retrieval_loss(temperature: float):
    """Docstrings and codes embedded apart by the one encoder; each docstring's code among the batch."""

    def loss(models, batch):
        m, q, c = models["model"], batch["query"], batch["code"]
        return info_nce(sentence_embeddings(m, q["input_ids"], q["attention_mask"]),
                        sentence_embeddings(m, c["input_ids"], c["attention_mask"]), temperature)  # fmt: skip

    return loss


def _check(r: RetrievalRecipe) -> None:
    if r.train.best_metric not in RANKING_METRICS or r.train.best_mode != "max":
        raise ConfigError(
            f"encoder-retrieval keeps the checkpoint with the highest {' or '.join(RANKING_METRICS)}: set "
            f"train.best_metric=val_mrr train.best_mode=max (got {r.train.best_metric}, {r.train.best_mode})"
        )


def _prepare(r: RetrievalRecipe, s: runner.Session) -> runner.Setup:
    rt, t, d = s.rt, r.train, r.data
    split = code_split(d.code)
    texts = lambda: [x for p in split.train for x in (p.query, p.code)]
    default = {"preset": "bert-mini", "pooler": False}
    tok, cfg, init_state = finetune_start(r.task, r.init, r.checkpoint, r.model, d.tokenizer, d.vocab_size, s.run_dir,
                                          s.resume, texts, {"heads": []}, default)  # fmt: skip
    limit = token_limit(d.max_length, cfg.block_size, "data")
    queries = tokenize(tok, [p.query for p in split.train], limit, d.truncation, "training docstrings")
    codes = tokenize(tok, [p.code for p in split.train], limit, d.truncation, "training codes")
    s.start(merge(to_dict(r), {"model": {"family": "bert", **to_dict(cfg)}}), tok)
    model = Bert(cfg)
    fresh = transfer_encoder(model, init_state, r.init) if init_state is not None else []
    model = model.to(rt.device)
    pair = lambda rows: {"query": collate(tok, queries, rows), "code": collate(tok, codes, rows)}
    data = ShuffledBatches(len(split.train), t.batch_size, pair, seed=t.seed, lengths=lengths(codes),
                           bucket=d.bucket)  # fmt: skip

    def evaluate(ms):  # the best checkpoint is the highest validation MRR (train.best_mode: max)
        m = code_search(Encoder(ms["model"], tok, limit, str(s.run_dir)), split.val, r.eval_batch_size, limit)
        return {"val_mrr": m["mrr"], "val_recall@10": m["recall@10"]}

    loss = retrieval_loss(r.temperature)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=lambda b: real_tokens(b["query"]) + real_tokens(b["code"]))  # fmt: skip

    def finish(trainer: Trainer) -> dict:
        test = code_search(load_encoder(s.run_dir, "best"), split.test, r.eval_batch_size, limit)
        s.log(f"test MRR {test['mrr']:.4f}, recall@10 {test['recall@10']:.3f} over {test['candidates']} functions "
              f"(best checkpoint) after {trainer.elapsed:.0f}s")  # fmt: skip
        return {"init": r.init, **{f"test_{k}": v for k, v in test.items() if k in ("mrr", "recall@1", "recall@5",
                "recall@10")}, "candidates": test["candidates"], "steps": trainer.step,
                "train_seconds": trainer.elapsed, "parameters": model.num_params(),
                "best_val_mrr": trainer.best}  # fmt: skip

    start = "random weights" if r.init == SCRATCH else f"{r.init}" + (" (new pooler)" if fresh else "")
    sizes = (f"from {start} | {len(split.train):,} train / {len(split.val):,} val / {len(split.test):,} test pairs | "
             f"vocab {tok.vocab_size}")  # fmt: skip
    batch = reference_batch(tok, codes, t.batch_size, t.seed, d.bucket, collate_rows=pair)
    n = batch["query"]["input_ids"].numel() + batch["code"]["input_ids"].numel()
    fpt = runner.flops_per_item(loss, {"model": model}, batch, rt.device, n)
    steps_tokens = _pair_tokens(queries, codes, t, d.bucket)
    return runner.Setup(trainer, data, model.num_params(), sizes, fpt, steps_tokens, finish)


train_retrieval = runner.entry_point("encoder-retrieval", RetrievalRecipe, _prepare, single_process=True,
                                     check=_check)  # fmt: skip


def _pair_tokens(queries, codes, t: TrainConfig, bucket: int):
    """Padded tokens (docstrings + codes) of the first n steps: the training sampler replayed."""
    q, c = lengths(queries), lengths(codes)

    def tokens(steps: int) -> int:
        replay = ShuffledBatches(len(c), t.batch_size, lambda rows: len(rows) * int(q[rows].max() + c[rows].max()),
                                 seed=t.seed, lengths=c, bucket=bucket)  # fmt: skip
        return sum(next(replay) for _ in range(steps * t.grad_accum))

    return tokens
