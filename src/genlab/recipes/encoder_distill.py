"""Encoder distillation (task ``encoder-distill``): DistilBERT (Sanh et al. 2019, arXiv:1910.01108).

A student with half the teacher's layers (``student_layers``), initialised from every other
teacher layer (:func:`genlab.objectives.distill.init_student_from_teacher`), trained on soft
targets + hard labels + the cosine of the last hidden states
(:func:`genlab.objectives.distill.sequence_distillation_loss`). The teacher is an
``encoder-classify`` run, frozen and in eval mode (with ``train.compile`` it is compiled too).
``results.json`` has the test accuracy of both, the accuracy retained and the inference speed-up
measured in the same process.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genlab.core.config import merge, to_dict
from genlab.data.corpora import topic_dataset
from genlab.data.tokenized import padded_tokens, real_tokens, reference_batch, shuffled_batches, token_limit, tokenize
from genlab.eval.classification import classification_scores, classifier_logits
from genlab.models.bert import Bert
from genlab.objectives.distill import init_student_from_teacher, sequence_distillation_loss
from genlab.recipes import runner
from genlab.runs import load_run, model_config, read_run_config
from genlab.runs.evaluate import load_classifier_run
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw


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


def time_inference(models: dict[str, Bert], tok, done, batch_size: int, repeats: int) -> dict[str, float]:
    """Seconds per pass over ``done`` of each model: the fastest of ``repeats`` passes, the models
    alternating so that a change in the machine's load affects both alike."""
    best = {k: math.inf for k in models}
    for _ in range(max(repeats, 1)):
        for name, model in models.items():
            start = time.perf_counter()
            classifier_logits(model, tok, done, batch_size)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _prepare(r: DistillRecipe, s: runner.Session) -> runner.Setup:
    rt, t = s.rt, r.train
    teacher_enc, d = load_classifier_run(Path(r.teacher), r.checkpoint)
    teacher, tok = teacher_enc.model.to(rt.device).eval(), teacher_enc.tokenizer
    teacher.requires_grad_(False)
    tc = teacher.config
    n_student = r.student_layers or max(tc.n_layer // 2, 1)
    if s.resume:
        cfg = model_config(read_run_config(s.run_dir)["model"])  # the resolved model the run started with
    else:
        cfg = dataclasses.replace(tc, n_layer=n_student)
    ds = topic_dataset(d)
    limit = token_limit(d.max_length, cfg.block_size, "data")
    sets = {name: tokenize(tok, getattr(ds, name).texts, limit, d.truncation, f"{name} texts")
            for name in ("train", "val", "test")}  # fmt: skip
    s.start(merge(to_dict(r), {"model": {"family": "bert", **to_dict(cfg)}, "data": to_dict(d)}), tok)
    student = Bert(cfg)
    if not s.resume:
        state = init_student_from_teacher(teacher.state_dict(), tc.n_layer, n_student, r"^blocks\.(\d+)\.")
        student.load_state_dict(state)
    student = student.to(rt.device)
    data = shuffled_batches(tok, sets["train"], ds.train.labels, t.batch_size, t.seed, d.bucket)
    lc = r.loss
    frozen = torch.compile(teacher) if t.compile else teacher  # not a trained model: the engine leaves it alone

    def loss(models, batch):
        return sequence_distillation_loss(models["model"], frozen, batch, lc.temperature, lc.alpha_soft,
                                          lc.alpha_hard, lc.alpha_cos)  # fmt: skip

    def evaluate(ms):
        sc = classification_scores(classifier_logits(ms["model"], tok, sets["val"], t.batch_size), ds.val.labels)
        return {"val_loss": sc["loss"], "val_accuracy": sc["accuracy"], "val_error": 1.0 - sc["accuracy"]}

    optimizer = adamw(student, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": student}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=real_tokens)  # fmt: skip

    def finish(trainer: Trainer) -> dict:
        best = load_run(s.run_dir, "best").model.to(rt.device)
        acc = {name: classification_scores(classifier_logits(m, tok, sets["test"], r.speed.batch_size),
                                           ds.test.labels)["accuracy"]
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
        s.log(f"student {acc['student']:.4f} vs teacher {acc['teacher']:.4f} test accuracy "
              f"({100 * results['accuracy_retained']:.1f}% retained), {results['speedup']:.2f}x faster")  # fmt: skip
        return results

    sizes = (f"student {n_student} of {tc.n_layer} layers of {r.teacher} ({teacher.num_params() / 1e6:.2f}M "
             f"teacher parameters)")  # fmt: skip
    batch = reference_batch(tok, sets["train"], t.batch_size, t.seed, d.bucket, ds.train.labels)
    fpt = runner.flops_per_item(loss, {"model": student}, batch, rt.device, batch["input_ids"].numel())
    tokens = lambda steps: padded_tokens(sets["train"], t.batch_size, t.seed, d.bucket, steps, t.grad_accum)
    return runner.Setup(trainer, data, student.num_params(), sizes, fpt, tokens, finish)


distill = runner.entry_point("encoder-distill", DistillRecipe, _prepare, single_process=True)
