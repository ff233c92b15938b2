"""Visual question answering recipes (tasks ``vqa`` and ``vqa-pretrain``): ViLBERT-style two-stream
co-attention, and its single-stream and question-only baselines (``model.streams=two|one|text``,
:mod:`genlab.models.vilbert`), on easy-VQA or on questions over the Fashion-MNIST scenes.

``task: vqa`` trains answer classification over the training answers (cross-entropy); every
evaluation scores validation accuracy, overall and per question type, and the best checkpoint is the
highest validation accuracy. ``results.json`` holds those validation figures (best checkpoint) beside
the answer-prior baseline (the most frequent training answer of each question type); ``genlab eval
RUN`` scores the test split the same way (:func:`evaluate_vqa`), and ``genlab vqa RUN --image PATH
--question "..."`` answers one question (:func:`answer`). ``init`` starts from a ``vqa-pretrain``
run: its weights (all but the VQA head) and its word vocabulary.

``task: vqa-pretrain`` is the paper's masked multi-modal modelling on image-text pairs: 15% of the
words (BERT's 80/10/10 masking) and 15% of the image patches (their pixels zeroed) are masked; the
loss is the masked-word cross-entropy plus ``pretrain.region_weight`` times the mean squared error of
the masked patches' regressed pixels. The pairs are each training image with its easy-VQA questions
(as text, without their answers), with its scene caption and questions (``data.source=scenes``),
or the Tux Paint drawings with their English captions (``data.source=tuxpaint``, real, RGB like
easy-VQA; ``vocab_from=easy-vqa`` adds easy-VQA's question words to the vocabulary for fine-tuning).

The data (``data.source``): ``easy-vqa`` (generated: procedural shapes; its train / test split, the
validation images carved out of train by image) or ``scenes`` (generated: real Fashion-MNIST items
placed on a canvas, ``genlab.data.scenes``; train / val / test scenes drawn from disjoint items).
The word vocabulary, the answers and the per-type priors are kept in the run (``vqa_vocab.json``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file

from genlab.core.config import from_dict, merge, to_dict
from genlab.core.errors import CheckpointError, ConfigError, DataError
from genlab.data.batches import ShuffledBatches
from genlab.data.easy_vqa import (
    KIND_EASY_VQA,
    KIND_SCENES,
    MASK,
    PAD,
    QuestionVocab,
    VQASplit,
    load_easy_vqa,
    read_image,
    scene_vqa,
    split_by_image,
    words,
)
from genlab.data.easy_vqa import read_easy_vqa as _read_easy_vqa
from genlab.models.vilbert import STREAMS, ViLBERT, ViLBERTConfig, budgeted, count_params, patch_pixels
from genlab.objectives.masked_lm import mask_tokens, masked_lm_loss
from genlab.recipes import runner
from genlab.runs import checkpoint_path, read_run_config
from genlab.training.checkpoint import load_weights
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw

SOURCES = ("easy-vqa", "scenes")
PRETRAIN_SOURCES = (*SOURCES, "tuxpaint")  # tuxpaint: captioned drawings (real), for pretraining only
FAMILY = "vilbert"


@dataclass
class VQAData:
    source: str = "easy-vqa"  # easy-vqa | scenes
    root: str = ""  # easy-vqa: an unpacked easy-VQA folder ("" = the easy-vqa source)
    val_fraction: float = 0.1  # easy-vqa: share of the training images held out for validation
    split_seed: int = 0  # easy-vqa: which images are held out
    scenes: dict = field(default_factory=lambda: {"train": 4000, "val": 500, "test": 1000})  # scenes per split
    scene_seed: int = 0
    max_train_questions: int = 0  # > 0: only this many training questions (the first ones; tests)
    max_eval_questions: int = 0  # > 0: only the first N validation / test questions


@dataclass
class PretrainConfig:
    word_rate: float = 0.15  # masked words per text
    region_rate: float = 0.15  # masked patches per image
    region_weight: float = 1.0  # loss = masked words + region_weight * masked regions


def _train_defaults(**over) -> TrainConfig:
    base = dict(max_steps=1500, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.01,
                eval_interval=250, log_interval=25, best_metric="val_accuracy", best_mode="max")  # fmt: skip
    return TrainConfig(**{**base, **over})


@dataclass
class VQARecipe:
    task: str = "vqa"
    init: str = ""  # a vqa-pretrain run directory: start from its weights and word vocabulary
    checkpoint: str = "best"  # which checkpoint of the init run
    model: dict = field(default_factory=dict)  # ViLBERTConfig fields (streams, n_embd, ...)
    data: VQAData = field(default_factory=VQAData)
    train: TrainConfig = field(default_factory=_train_defaults)


@dataclass
class PretrainRecipe:
    task: str = "vqa-pretrain"
    model: dict = field(default_factory=dict)
    data: VQAData = field(default_factory=VQAData)  # source: easy-vqa | scenes | tuxpaint
    vocab_from: str = ""  # easy-vqa | scenes: that source's training questions join the word vocabulary
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=lambda: _train_defaults(best_metric="val_loss", best_mode="min"))


def _check(r) -> None:
    valid = PRETRAIN_SOURCES if r.task == "vqa-pretrain" else SOURCES
    if r.data.source not in valid:
        raise ConfigError(f"data.source='{r.data.source}' is not one of {list(valid)}")
    if getattr(r, "vocab_from", "") not in ("", *SOURCES):
        raise ConfigError(f"vocab_from='{r.vocab_from}' is not one of {['', *SOURCES]}")
    streams = r.model.get("streams", "two")
    if streams not in STREAMS:
        raise ConfigError(f"model.streams='{streams}' is not one of {list(STREAMS)}")
    if r.task == "vqa-pretrain" and streams == "text":
        raise ConfigError("masked-region pretraining needs an image stream: model.streams=two or one")


# --- data ------------------------------------------------------------------------------------


KIND_TUXPAINT = "real (Tux Paint stamps: human-drawn pictures with human-written captions)"


def data_kind(source: str) -> str:
    return {"easy-vqa": KIND_EASY_VQA, "scenes": KIND_SCENES, "tuxpaint": KIND_TUXPAINT}[source]


def _scenes(d: VQAData, split: str) -> list:
    from genlab.data.scenes import make_scenes  # genlab.data.scenes: the Fashion-MNIST scenes

    if split not in d.scenes:
        raise ConfigError(f"data.scenes needs a count for the '{split}' split, got {d.scenes}")
    return make_scenes(split, int(d.scenes[split]), seed=d.scene_seed)


def load_split(d: VQAData, split: str) -> VQASplit:
    """The questions of one split (train / val / test) of ``d.source``, cut to the configured limits."""
    if d.source == "easy-vqa":
        if d.root:
            own = _read_easy_vqa(d.root, "test" if split == "test" else "train")
            if split == "test":
                s = own
            else:
                s = split_by_image(own, d.val_fraction, d.split_seed, "easy-vqa")[split == "val"]
        else:
            s = load_easy_vqa(split, d.val_fraction, d.split_seed)
    else:
        s = scene_vqa(_scenes(d, split), f"scenes/{split}")
    limit = d.max_train_questions if split == "train" else d.max_eval_questions
    if limit and limit < len(s):
        s = VQASplit(s.images, s.questions[:limit], s.answers[:limit], s.types[:limit], s.image_index[:limit],
                     s.name, s.kind)  # fmt: skip
    return s


def pretrain_pairs(d: VQAData, split: str) -> VQASplit:
    """Image-text pairs for masked multi-modal modelling: easy-VQA's questions (their answers are
    not used), each scene's caption and questions, or the Tux Paint drawings' English captions."""
    if d.source == "easy-vqa":
        return load_split(d, split)
    if d.source == "tuxpaint":
        from genlab.data.captions import load_tuxpaint  # Tux Paint stamps, 64 x 64 RGB on white

        items = load_tuxpaint(split, 64)
        if not items:
            raise DataError(f"Tux Paint has no '{split}' drawings here: reinstall tuxpaint-stamps-default")
        n = len(items)
        return VQASplit(np.stack([c.image for c in items]), [c.caption for c in items], [""] * n, ["caption"] * n,
                        np.arange(n), f"tuxpaint/{split}", KIND_TUXPAINT)  # fmt: skip
    scenes = _scenes(d, split)
    s = scene_vqa(scenes, f"scenes/{split}")
    captions = [sc.caption for sc in scenes]
    return VQASplit(s.images, captions + s.questions, [""] * len(scenes) + s.answers,
                    ["caption"] * len(scenes) + s.types, np.concatenate([np.arange(len(scenes)), s.image_index]),
                    s.name, s.kind)  # fmt: skip


def encode_questions(vocab: QuestionVocab, questions: list[str], block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (ids (Q, L) int64 padded with [PAD], lengths (Q,)): [CLS] words [SEP], cut to ``block_size``."""
    encoded = [vocab.encode(q, block_size) for q in questions]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    ids = np.zeros((len(encoded), int(lengths.max())), dtype=np.int64)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = e
    return ids, lengths


class VQABatches(ShuffledBatches):
    """Endless shuffled mini-batches of questions, ``{"input_ids" (B, T), "attention_mask" (B, T),
    "images" float (B, C, H, W) in [0, 1], "labels" (B,)}`` (T: the longest question of the batch;
    labels -100 for an answer outside the vocabulary), with ShuffledBatches' exact resume."""

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, split: VQASplit, labels: np.ndarray, batch_size: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1):  # fmt: skip
        self.ids, self.question_lengths = torch.from_numpy(ids), torch.from_numpy(lengths)
        self.images = torch.from_numpy(np.ascontiguousarray(split.images.transpose(0, 3, 1, 2)))  # (N, C, H, W) uint8
        self.image_index = torch.from_numpy(split.image_index)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        super().__init__(len(ids), batch_size, self.collate_rows, seed, rank, world_size)

    def collate_rows(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        T = int(self.question_lengths[index].max())
        ids = self.ids[index, :T]  # (B, T)
        return {
            "input_ids": ids,
            "attention_mask": (ids != 0).long(),
            "images": self.images[self.image_index[index]].float().div_(255.0),  # (B, C, H, W)
            "labels": self.labels[index],
        }


def answer_labels(vocab: QuestionVocab, answers: list[str]) -> np.ndarray:
    return np.array([-100 if vocab.answer_id(a) is None else vocab.answer_id(a) for a in answers], dtype=np.int64)


# --- losses and scores -----------------------------------------------------------------------


def vqa_loss(models: dict, batch: dict) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of the answer logits (B, A) against the answer ids; metric: accuracy."""
    logits = models["model"](batch["input_ids"], batch["attention_mask"], batch["images"]).logits  # (B, A)
    loss = F.cross_entropy(logits.float(), batch["labels"], ignore_index=-100)
    return loss, {"accuracy": (logits.argmax(-1) == batch["labels"]).float().mean()}


def pretrain_loss(models: dict, batch: dict, p: PretrainConfig, vocab: QuestionVocab) -> tuple[torch.Tensor, dict]:
    """Masked words (BERT masking of ``word_rate`` of the words) + ``region_weight`` x the mean
    squared error of the masked patches' regressed pixels (``region_rate`` of the patches zeroed).
    Draws from the global RNG, which the engine's checkpoints restore (exact resume)."""
    model = models["model"]
    cfg = model.config if hasattr(model, "config") else model.module.config
    ids, am, images = batch["input_ids"], batch["attention_mask"], batch["images"]
    specials = [vocab.id(t) for t in ("[CLS]", "[SEP]", PAD, "[UNK]")]
    inputs, labels = mask_tokens(ids, mask_id=vocab.id(MASK), vocab_size=vocab.vocab_size, special_ids=specials,
                                 attention_mask=am, rate=p.word_rate)  # fmt: skip
    B, N = ids.size(0), cfg.n_patches
    k = max(1, round(p.region_rate * N))
    ranks = torch.rand(B, N, device=ids.device).argsort(1).argsort(1)
    patch_mask = ranks < k  # (B, N) exactly k masked patches per image
    out = model(inputs, am, images, patch_mask, heads=("mlm", "region"))
    word, metrics = masked_lm_loss(out.mlm_logits, labels)
    target = patch_pixels(images, cfg.patch_size)  # (B, N, P P C_in)
    region = F.mse_loss(out.region[patch_mask].float(), target[patch_mask].float())
    return word + p.region_weight * region, {"word_loss": word.detach(), "region_loss": region.detach(),
                                             "mlm_accuracy": metrics["mlm_accuracy"]}  # fmt: skip


@torch.no_grad()
def predict(model: ViLBERT, vocab: QuestionVocab, split: VQASplit, batch_size: int = 256) -> torch.Tensor:
    """Answer probabilities (Q, A) for every question of ``split`` (the model in eval mode)."""
    ids, lengths = encode_questions(vocab, split.questions, model.config.block_size)
    data = VQABatches(ids, lengths, split, np.zeros(len(ids)), min(batch_size, len(ids)))
    device = next(model.parameters()).device
    probs = []
    for start in range(0, len(ids), batch_size):
        b = data.collate_rows(np.arange(start, min(start + batch_size, len(ids))))
        images = b["images"].to(device) if model.config.streams != "text" else None
        logits = model(b["input_ids"].to(device), b["attention_mask"].to(device), images).logits
        probs.append(logits.float().softmax(-1).cpu())
    return torch.cat(probs)


def vqa_scores(probs: torch.Tensor, vocab: QuestionVocab, split: VQASplit) -> dict:
    """Accuracy overall and per question type (an answer outside the vocabulary counts wrong),
    the cross-entropy over the answerable questions, and the answer-prior baseline."""
    labels = torch.from_numpy(answer_labels(vocab, split.answers))
    pred = probs.argmax(-1)
    right = (pred == labels).numpy()
    known = labels >= 0
    nll = -probs[known].gather(1, labels[known, None]).clamp_min(1e-12).log().mean().item() if known.any() else 0.0
    prior = np.array([vocab.prior(t) == a for t, a in zip(split.types, split.answers)])
    types = np.array(split.types)
    per_type = {t: {"accuracy": float(right[types == t].mean()), "prior_accuracy": float(prior[types == t].mean()),
                    "n": int((types == t).sum())} for t in sorted(set(split.types))}  # fmt: skip
    return {"accuracy": float(right.mean()), "loss": nll, "prior_accuracy": float(prior.mean()), "n": len(split),
            "per_type": per_type, "answerable": float(known.float().mean())}  # fmt: skip


def _metric_name(t: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in t)


# --- models from configs and runs ------------------------------------------------------------


def model_config(
    section: dict, vocab: QuestionVocab, split: VQASplit, block_size: int, pretraining: bool = False
) -> ViLBERTConfig:
    """The recipe's model section + what the data fixes (vocabulary, answers, image shape); the
    pretraining heads only for pretraining."""
    section = {k: v for k, v in section.items() if k != "family"}
    fixed = {"vocab_size": vocab.vocab_size, "n_answers": max(len(vocab.answers), 1), "block_size": block_size,
             "image_size": split.image_size, "in_channels": split.channels, "pretrain_heads": pretraining}  # fmt: skip
    for k in ("image_size", "in_channels", "vocab_size"):
        if k in section and section[k] != fixed[k]:
            raise ConfigError(f"model.{k}={section[k]} but the {split.name} data has {fixed[k]}: drop the override")
    return budgeted(from_dict(ViLBERTConfig, {**section, **fixed}, "model"))


def budget_line(cfg: ViLBERTConfig) -> str:
    counts = {s: count_params(dataclasses.replace(cfg, streams=s, n_inner=0)) for s in STREAMS}
    return "budget " + " / ".join(f"{s} {n:,}" for s, n in counts.items())


def load_vqa_run(run_dir: str | Path, which: str = "best") -> tuple[ViLBERT, QuestionVocab, dict]:
    """(model in eval mode, vocabulary, resolved recipe) of a vqa or vqa-pretrain run."""
    config = read_run_config(run_dir)
    if config.get("task") not in ("vqa", "vqa-pretrain"):
        raise ConfigError(f"{run_dir} is a '{config.get('task', 'lm')}' run, not a VQA run (genlab train vqa/...)")
    vocab = QuestionVocab.load(run_dir)
    section = {k: v for k, v in (config.get("model") or {}).items() if k != "family"}
    model = ViLBERT(from_dict(ViLBERTConfig, section, "model"))
    load_weights(model, checkpoint_path(run_dir, which) / "model.safetensors")
    return model.eval(), vocab, config


def _init_weights(model: ViLBERT, init: str, which: str) -> list[str]:
    """Copy every weight of a pretraining run but its VQA head; returns the names left fresh."""
    path = checkpoint_path(init, which) / "model.safetensors"
    try:
        source = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e} (truncated or not a safetensors file)") from e
    own = model.state_dict()
    body = [k for k in own if not k.startswith("vqa.")]
    missing = [k for k in body if k not in source]
    if missing:
        raise CheckpointError(f"{init} does not hold this model's body: no weights for {missing[:3]}")
    bad = [k for k in body if source[k].shape != own[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{init}: '{k}' has shape {tuple(source[k].shape)}, the model {tuple(own[k].shape)}: "
                              "fine-tune with the pretraining run's model section")  # fmt: skip
    model.load_state_dict({k: source[k] for k in body}, strict=False)
    return [k for k in own if k.startswith("vqa.")]


# --- the two tasks ---------------------------------------------------------------------------


def _batches_setup(s: runner.Session, loss, model, data: VQABatches, t: TrainConfig) -> tuple:
    ref = data.collate_rows(np.arange(min(t.batch_size, data.n)))
    fpi = runner.flops_per_item(loss, {"model": model}, ref, s.rt.device, len(ref["labels"]))
    return fpi, lambda steps: steps * t.batch_size * t.grad_accum


def _prepare_vqa(r: VQARecipe, s: runner.Session) -> runner.Setup:
    rt, t, d = s.rt, r.train, r.data
    train, val = load_split(d, "train"), load_split(d, "val")
    vocab = QuestionVocab.build(train.questions, train.answers, train.types)
    section = dict(r.model)
    if r.init:
        init_cfg = read_run_config(r.init)
        if init_cfg.get("task") != "vqa-pretrain":
            raise ConfigError(f"init={r.init} is a '{init_cfg.get('task')}' run: give a vqa-pretrain run")
        vocab = dataclasses.replace(vocab, tokens=QuestionVocab.load(r.init).tokens)
        section = merge({k: v for k, v in init_cfg["model"].items() if k != "n_answers"}, section)
    block = int(section.pop("block_size", 0)) or max(len(vocab.encode(q)) for q in train.questions) + 4
    cfg = model_config(section, vocab, train, block)
    s.start(merge(to_dict(r), {"model": {"family": FAMILY, **to_dict(cfg)}}), vocab)
    model = ViLBERT(cfg)
    fresh = _init_weights(model, r.init, r.checkpoint) if r.init else []
    model = rt.wrap(model)
    ids, lengths = encode_questions(vocab, train.questions, cfg.block_size)
    data = VQABatches(ids, lengths, train, answer_labels(vocab, train.answers), t.batch_size, t.seed, rt.rank,
                      rt.world_size)  # fmt: skip

    def evaluate(ms):
        sc = vqa_scores(predict(ms["model"], vocab, val), vocab, val)
        out = {"val_loss": sc["loss"], "val_accuracy": sc["accuracy"]}
        out.update({f"val_accuracy_{_metric_name(k)}": v["accuracy"] for k, v in sc["per_type"].items()})
        return out

    loss = vqa_loss
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=lambda b: len(b["labels"]), unit="q")  # fmt: skip
    n_params = sum(q.numel() for q in model.parameters() if q.requires_grad)
    vqa_params = count_params(cfg)

    def finish(trainer: Trainer) -> dict:
        best, _, _ = load_vqa_run(s.run_dir, "best")
        sc = vqa_scores(predict(best, vocab, val), vocab, val)
        s.log(f"validation accuracy {sc['accuracy']:.4f} (answer prior {sc['prior_accuracy']:.4f}); per type "
              + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in sc["per_type"].items()))  # fmt: skip
        return {"streams": cfg.streams, "vqa_parameters": vqa_params, "data": d.source,
                "data_kind": data_kind(d.source),
                "init": r.init or "scratch", "val_accuracy": sc["accuracy"], "val_loss": sc["loss"],
                "val_prior_accuracy": sc["prior_accuracy"], "val_per_type": sc["per_type"], "val_n": sc["n"],
                "best_val_accuracy": trainer.best}  # fmt: skip

    start = "random weights" if not r.init else f"{r.init} (new: {', '.join(sorted({k.split('.')[0] for k in fresh}))})"
    describe = (f"{cfg.streams} stream(s), {vqa_params:,} parameters ({budget_line(cfg)}) | from {start} | "
                f"{d.source} ({data_kind(d.source)}): {len(train):,} train / {len(val):,} val questions, "
                f"{len(vocab.answers)} answers, {vocab.vocab_size} words")  # fmt: skip
    fpi, items = _batches_setup(s, loss, model, data, t)
    return runner.Setup(trainer, data, n_params, describe, fpi, items, finish)


def _prepare_pretrain(r: PretrainRecipe, s: runner.Session) -> runner.Setup:
    rt, t, d, p = s.rt, r.train, r.data, r.pretrain
    train, val = pretrain_pairs(d, "train"), pretrain_pairs(d, "val")
    extra = load_split(dataclasses.replace(d, source=r.vocab_from), "train").questions if r.vocab_from else []
    vocab = QuestionVocab.build(train.questions, train.answers, train.types, extra_text=extra)
    section = dict(r.model)
    block = int(section.pop("block_size", 0)) or max(len(vocab.encode(q)) for q in train.questions) + 4
    cfg = model_config(section, vocab, train, block, pretraining=True)
    s.start(merge(to_dict(r), {"model": {"family": FAMILY, **to_dict(cfg)}}), vocab)
    model = rt.wrap(ViLBERT(cfg))
    ids, lengths = encode_questions(vocab, train.questions, cfg.block_size)
    data = VQABatches(ids, lengths, train, np.zeros(len(ids)), t.batch_size, t.seed, rt.rank, rt.world_size)
    vids, vlengths = encode_questions(vocab, val.questions, cfg.block_size)
    val_data = VQABatches(vids, vlengths, val, np.zeros(len(vids)), min(t.batch_size, len(vids)), t.seed)
    loss = lambda ms, batch: pretrain_loss(ms, batch, p, vocab)

    def evaluate(ms):  # under the engine's forked, fixed-seed RNG: the same masks every evaluation
        sums, bs = Counter(), val_data.batch_size
        n = min(t.eval_batches, math.ceil(len(vids) / bs))
        for i in range(n):
            b = val_data.collate_rows(np.arange(i * bs, min((i + 1) * bs, len(vids))))
            value, m = pretrain_loss(ms, {k: v.to(rt.device) for k, v in b.items()}, p, vocab)
            sums.update({"val_loss": float(value), "val_word_loss": float(m["word_loss"]),
                         "val_region_loss": float(m["region_loss"])})  # fmt: skip
        return {k: v / n for k, v in sums.items()}

    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=lambda b: len(b["input_ids"]), unit="pair")  # fmt: skip
    n_params = sum(q.numel() for q in model.parameters())

    def finish(trainer: Trainer) -> dict:
        return {"streams": cfg.streams, "data": d.source, "data_kind": data_kind(d.source),
                "region_target": "pixels of the masked patch (MSE)", "best_val_loss": trainer.best}  # fmt: skip

    describe = (f"masked words + masked regions, {cfg.streams} stream(s) | {d.source} ({data_kind(d.source)}): "
                f"{len(train):,} train / {len(val):,} val image-text pairs, {vocab.vocab_size} words")  # fmt: skip
    fpi, items = _batches_setup(s, loss, model, data, t)
    return runner.Setup(trainer, data, n_params, describe, fpi, items, finish)


train = runner.entry_point("vqa", VQARecipe, _prepare_vqa, check=_check)
pretrain = runner.entry_point("vqa-pretrain", PretrainRecipe, _prepare_pretrain, check=_check)


# --- genlab eval and genlab vqa --------------------------------------------------------------


def evaluate_vqa(run_dir: str | Path, which: str = "best", split: str = "test", limit: int = 0) -> dict:
    """``genlab eval RUN`` for a vqa run: accuracy on ``split`` overall and per question type, beside
    the answer-prior baseline, with the data kind."""
    model, vocab, config = load_vqa_run(run_dir, which)
    if config.get("task") != "vqa":
        raise ConfigError(f"{run_dir} is a vqa-pretrain run: fine-tune it (genlab train vqa/easy-vqa init=...)")
    d = from_dict(VQAData, config.get("data") or {}, "data")
    if limit:
        d = dataclasses.replace(d, max_eval_questions=limit)
    data = load_split(d, split)
    sc = vqa_scores(predict(model, vocab, data), vocab, data)
    return {"task": "vqa", "split": split, "data": d.source, "data_kind": data_kind(d.source),
            "streams": model.config.streams, "checkpoint": which, **sc}  # fmt: skip


def answer(run_dir: str | Path, image: str | Path, question: str, which: str = "best") -> dict:
    """One question about one image file: ``{"answer", "probability", "type", "warning"}``.

    When every word of the question is outside the run's vocabulary, or the question is of a kind
    the run's answers do not cover (no training question starts like it), the model has nothing to
    go on: the answer is the prior, the most frequent training answer of the question's type (of the
    most common type when the type is unknown), and ``warning`` says why in one line."""
    model, vocab, config = load_vqa_run(run_dir, which)
    cfg = model.config
    arr = read_image(image, cfg.in_channels, cfg.image_size)  # (S, S, C)
    said, unknown, qtype = words(question), vocab.unknown_words(question), vocab.question_type(question)
    if len(unknown) == len(said):
        prior = vocab.prior(qtype)
        to = "" if qtype is None else f" to {qtype} questions"
        return {"answer": prior, "probability": None, "type": qtype, "source": "prior",
                "warning": f"every word of {question!r} is outside the run's vocabulary: answering from the prior "
                           f"(the most frequent training answer{to})"}  # fmt: skip
    if qtype is None:
        starts = ", ".join(f"'{lead}'" for lead in sorted(vocab.leads))
        return {"answer": vocab.prior(None), "probability": None, "type": None, "source": "prior",
                "warning": f"the run's answer vocabulary has no entry for questions like {question!r} (its questions "
                           f"start {starts}): answering from the prior, its most frequent training answer"}  # fmt: skip
    ids = torch.tensor([vocab.encode(question, cfg.block_size)])
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)[None]  # (1, C, S, S)
    with torch.no_grad():
        probs = model(ids, torch.ones_like(ids), None if cfg.streams == "text" else x).logits.float().softmax(-1)[0]
    k = int(probs.argmax())
    warning = None
    if unknown:
        warning = f"words outside the run's vocabulary (read as [UNK]): {', '.join(unknown)}"
    return {
        "answer": vocab.answers[k],
        "probability": float(probs[k]),
        "type": qtype,
        "source": "model",
        "warning": warning,
    }
