"""Encoder fine-tuning for classification (task ``encoder-classify``): the fortune topics.

A sequence classifier on the fortune topic task (:mod:`genlab.data.text_tasks`, settings
:class:`genlab.data.corpora.TopicData`). ``init`` = ``scratch`` (random weights, a WordPiece
vocabulary trained on the training texts), ``minilm``, a genlab bert run directory (e.g. a
pretraining run: its encoder, its tokenizer) or a Hugging Face BERT folder
(:mod:`genlab.runs.finetune`). The best checkpoint is the lowest validation loss; its test
accuracy goes to ``results.json`` (``genlab eval RUN`` computes the same figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genlab.core.config import merge, to_dict
from genlab.data.corpora import TopicData, topic_dataset
from genlab.data.tokenized import padded_tokens, real_tokens, reference_batch, shuffled_batches, token_limit, tokenize
from genlab.eval.classification import classification_scores, classifier_logits
from genlab.models.bert import Bert, transfer_encoder
from genlab.objectives.classification import sequence_classification_loss
from genlab.recipes import runner
from genlab.runs.evaluate import evaluate_classifier
from genlab.runs.finetune import SCRATCH, finetune_start
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw


@dataclass
class ClassifyRecipe:
    task: str = "encoder-classify"
    init: str = SCRATCH  # scratch | minilm | a bert run directory | a Hugging Face BERT folder
    checkpoint: str = "best"  # which checkpoint of an init run
    model: dict = field(default_factory=dict)  # scratch: the architecture (default preset bert-mini);
    # otherwise only FINETUNE_FIELDS (the run directory's config.yaml holds the resolved model)
    data: TopicData = field(default_factory=TopicData)
    train: TrainConfig = field(default_factory=TrainConfig)


def _prepare(r: ClassifyRecipe, s: runner.Session) -> runner.Setup:
    rt, t, d = s.rt, r.train, r.data
    ds = topic_dataset(d)
    K = len(ds.classes)
    over = {"heads": ["sequence"], "num_labels": K}
    tok, cfg, init_state = finetune_start(r.task, r.init, r.checkpoint, r.model, d.tokenizer, d.vocab_size, s.run_dir,
                                          s.resume, lambda: ds.train.texts, over, {"preset": "bert-mini"})  # fmt: skip
    limit = token_limit(d.max_length, cfg.block_size, "data")
    sets = {name: tokenize(tok, getattr(ds, name).texts, limit, d.truncation, f"{name} texts")
            for name in ("train", "val", "test")}  # fmt: skip
    s.start(merge(to_dict(r), {"model": {"family": "bert", **to_dict(cfg)}}), tok)
    model = Bert(cfg)
    fresh = transfer_encoder(model, init_state, r.init) if init_state is not None else []
    model = rt.wrap(model)
    data = shuffled_batches(tok, sets["train"], ds.train.labels, t.batch_size, t.seed, d.bucket, rt.rank,
                            rt.world_size)  # fmt: skip

    def evaluate(ms):
        sc = classification_scores(classifier_logits(ms["model"], tok, sets["val"], t.batch_size), ds.val.labels)
        return {"val_loss": sc["loss"], "val_accuracy": sc["accuracy"], "val_error": 1.0 - sc["accuracy"]}

    loss = lambda ms, batch: sequence_classification_loss(ms["model"], batch)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=real_tokens)  # fmt: skip
    n_params = sum(q.numel() for q in model.parameters())

    def finish(trainer: Trainer) -> dict:
        test = evaluate_classifier(s.run_dir)
        s.log(f"test accuracy {test['accuracy']:.4f} over {K} topics (best checkpoint) after {trainer.elapsed:.0f}s")
        return {"init": r.init, "test_accuracy": test["accuracy"], "test_loss": test["loss"], "classes": ds.classes,
                "steps": trainer.step, "train_seconds": trainer.elapsed, "parameters": n_params,
                "best_val_loss": trainer.best}  # fmt: skip

    fresh_parts = ", ".join(sorted({k.split(".")[0] for k in fresh})) or "none"
    start = "random weights" if r.init == SCRATCH else f"{r.init} (new: {fresh_parts})"
    sizes = (f"from {start} | {K} topics | {len(ds.train):,} train / {len(ds.val):,} val / {len(ds.test):,} test "
             f"fortunes | vocab {tok.vocab_size}")  # fmt: skip
    batch = reference_batch(tok, sets["train"], t.batch_size, t.seed, d.bucket, ds.train.labels)
    fpt = runner.flops_per_item(loss, {"model": model}, batch, rt.device, batch["input_ids"].numel())
    tokens = lambda steps: padded_tokens(sets["train"], t.batch_size, t.seed, d.bucket, steps, t.grad_accum)
    return runner.Setup(trainer, data, n_params, sizes, fpt, tokens, finish)


train_classifier = runner.entry_point("encoder-classify", ClassifyRecipe, _prepare)
