"""Encoder-decoder tasks: supervised ``seq2seq`` on pairs and denoising ``seq2seq-pretrain``.

``seq2seq`` trains a :class:`~genlab.models.seq2seq.Seq2Seq` on translation or summarisation
pairs (a named pair source, ``genlab data list``, or a ``src<TAB>tgt`` file), split by group
(:func:`genlab.data.parallel.split_by_group`). One unigram tokenizer is trained on the training
split's both sides and saved with the run. Several tasks form a T5 text-to-text mixture
(Raffel et al. 2020, arXiv:1910.10683): each task's inputs start with its prefix
(``"translate English to French: "``, ``"summarize: "``) and the training examples of all tasks
are pooled (examples-proportional mixing, each task capped by ``max_train``).

Batches are length-bucketed (:class:`~genlab.data.batches.ShuffledBatches`); the loss is the
token-mean cross-entropy, optionally label-smoothed (Szegedy et al. 2016; Vaswani et al. 2017
use eps = 0.1)::

    loss = (1 - eps) * -log p(y_t) + eps * mean_v -log p(v)      over target tokens t

Each evaluation computes the validation loss and greedy-decodes a fixed validation subset of
each task: BLEU and chrF (sacreBLEU) for translation, ROUGE-1/2/L for summaries; ``val_score``
is the mean of each task's main figure (BLEU or ROUGE-L) and picks the best checkpoint
(``train.best_metric: val_score``, ``best_mode: max``). At the end the best checkpoint decodes
each test split once with beam search (``eval.beams``, default 4): those are results.json's figures
(``genlab eval RUN`` recomputes them).

``seq2seq-pretrain`` trains the same model on unlabelled text with one of the denoising
objectives: T5 span corruption (:func:`~genlab.objectives.span_corruption.span_corrupt`), BART
noising (:func:`~genlab.objectives.denoising.bart_noise`) or PEGASUS gap sentences
(:func:`~genlab.objectives.denoising.gap_sentence_example`). Its texts are the training splits'
source sides of pair sources (e.g. the Debian long descriptions without their synopses, the
English help paragraphs): the pairs' validation and test groups stay unseen. A supervised recipe
starts from such a run with ``init: RUN`` (its weights and its tokenizer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.config import from_dict, merge, to_dict
from genlab.core.errors import ConfigError
from genlab.data.batches import ShuffledBatches
from genlab.data.parallel import IGNORE_INDEX, Pair, collate_seq2seq, split_by_group
from genlab.data.sources import load_pairs
from genlab.models import build_model, family_of
from genlab.objectives.denoising import (
    BartNoiseConfig,
    GapSentenceConfig,
    bart_noise,
    gap_sentence_example,
    split_sentences,
)
from genlab.objectives.span_corruption import SpanCorruptionConfig, span_corrupt
from genlab.recipes import runner
from genlab.runs import load_run, model_config, read_run_config
from genlab.runs.evaluate import MAIN_FIGURE, evaluate_pairs, evaluate_seq2seq
from genlab.tokenizers import UnigramTokenizer, load_tokenizer
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import unwrap

SCRATCH = "scratch"
METRICS = tuple(MAIN_FIGURE)  # bleu: BLEU + chrF (translation); rouge: ROUGE-1/2/L (summaries)
OBJECTIVES = ("span", "bart", "pegasus")
TRUNCATION = ("drop", "cut")


# --- Config ---------------------------------------------------------------------------


@dataclass
class TaskConfig:
    """One task of the mixture: its pairs, its prefix, how it is scored."""

    source: str = "help-en-fr"  # a pair source (genlab data list) or a src<TAB>tgt file
    prefix: str = ""  # T5 task prefix, e.g. "translate English to French: "
    metric: str = "bleu"  # bleu | rouge
    name: str = ""  # in metric names (val_<name>_bleu); default: the source's name
    max_train: int = 0  # at most this many training pairs (0: all)
    train_fraction: float = 1.0  # a seeded random fraction of the training pairs (fine-tuning on 10%)


@dataclass
class Seq2SeqData:
    tasks: list[dict] = field(default_factory=lambda: [{}])  # TaskConfig entries (a mixture when several)
    vocab_size: int = 8000  # the shared unigram tokenizer (scratch runs)
    tokenizer_texts: int = 60000  # at most this many training texts train the tokenizer (0: all)
    max_source_len: int = 128  # tokens (the prefix included); longer training pairs are dropped or cut
    max_target_len: int = 64
    truncation: str = "drop"  # drop | cut, for training pairs over the limits
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    salt: str = "genlab"  # of the group split
    bucket: int = 50  # global batches sorted by length together (0 or 1: no bucketing)


@dataclass
class EvalConfig:
    val_pairs: int = 200  # the fixed validation subset each task greedy-decodes at every evaluation
    val_batches: int = 0  # validation-loss batches (0: train.eval_batches)
    test_pairs: int = 0  # test pairs per task decoded at the end (0: all)
    beams: int = 4  # test decoding (validation decodes greedily)
    length_penalty: float = 1.0
    max_new_tokens: int = 0  # 0: data.max_target_len
    batch_size: int = 32  # sources decoded together


@dataclass
class Seq2SeqRecipe:
    task: str = "seq2seq"
    init: str = SCRATCH  # scratch | a seq2seq run directory (e.g. a seq2seq-pretrain run)
    checkpoint: str = "best"  # which checkpoint of the init run
    model: dict = field(default_factory=lambda: {"preset": "t5-cpu"})
    label_smoothing: float = 0.0
    data: Seq2SeqData = field(default_factory=Seq2SeqData)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class PretrainData:
    sources: list[str] = field(default_factory=lambda: ["debian-descriptions", "help-en-fr"])  # their source sides
    max_texts: int = 0  # per source, training-split texts (0: all)
    min_words: int = 8  # shorter texts are skipped
    vocab_size: int = 8000
    tokenizer_texts: int = 60000
    max_source_len: int = 128  # tokens of a noised input; a longer text is cut (at a sentence end for bart/pegasus)
    max_target_len: int = 128
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    salt: str = "genlab"
    bucket: int = 50


@dataclass
class PretrainRecipe:
    task: str = "seq2seq-pretrain"
    objective: str = "span"  # span (T5) | bart | pegasus
    model: dict = field(default_factory=lambda: {"preset": "t5-cpu"})
    span: SpanCorruptionConfig = field(default_factory=SpanCorruptionConfig)
    bart: BartNoiseConfig = field(default_factory=BartNoiseConfig)
    pegasus: GapSentenceConfig = field(default_factory=GapSentenceConfig)
    data: PretrainData = field(default_factory=PretrainData)
    train: TrainConfig = field(default_factory=TrainConfig)


def task_configs(tasks: list[dict]) -> list[TaskConfig]:
    """The mixture's tasks, checked: known metric, distinct names."""
    if not tasks:
        raise ConfigError("data.tasks is empty: give at least one task (source, prefix, metric)")
    out = []
    for i, t in enumerate(tasks):
        tc = from_dict(TaskConfig, t or {}, f"data.tasks[{i}]")
        if tc.metric not in METRICS:
            raise ConfigError(f"data.tasks[{i}].metric='{tc.metric}' is not one of {list(METRICS)}")
        if not 0.0 < tc.train_fraction <= 1.0:
            raise ConfigError(f"data.tasks[{i}].train_fraction={tc.train_fraction} must be in (0, 1]")
        out.append(dataclasses.replace(tc, name=tc.name or Path(tc.source).stem))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"two tasks share a name ({', '.join(names)}): set data.tasks[i].name apart")
    return out


def task_prefixes(config: dict) -> list[str]:
    """The prefixes a seq2seq run was trained with (for the prefix warning of ``genlab sample``)."""
    data = config.get("data") or {}
    return [(t or {}).get("prefix", "") for t in data.get("tasks") or [{}]]


# --- Loss -----------------------------------------------------------------------------


def seq2seq_loss(model, batch: dict, label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Token-mean (label-smoothed) cross-entropy of teacher forcing; also reports the plain CE."""
    logits = model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
                   batch["decoder_attention_mask"]).logits  # (B, T, V)  # fmt: skip
    flat, labels = logits.flatten(0, 1).float(), batch["labels"].flatten()  # (B*T, V), (B*T,)
    loss = F.cross_entropy(flat, labels, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
    if not label_smoothing:
        return loss, {}
    return loss, {"ce": F.cross_entropy(flat.detach(), labels, ignore_index=IGNORE_INDEX)}


@torch.no_grad()
def mean_ce(model, batches: list[dict], device) -> float:
    """Cross-entropy per target token over fixed batches (no smoothing)."""
    total, n = 0.0, 0
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        logits = model(b["input_ids"], b["attention_mask"], b["decoder_input_ids"], b["decoder_attention_mask"]).logits
        labels = b["labels"].flatten()
        total += float(F.cross_entropy(logits.flatten(0, 1).float(), labels, ignore_index=IGNORE_INDEX,
                                       reduction="sum"))  # fmt: skip
        n += int((labels != IGNORE_INDEX).sum())
    return total / max(n, 1)


# --- Shared set-up --------------------------------------------------------------------


def _limit_examples(examples, max_src: int, max_tgt: int, policy: str, what: str):
    """(input_ids, labels) within the length limits: dropped or cut (the cut keeps </s> last)."""
    if policy not in TRUNCATION:
        raise ConfigError(f"data.truncation='{policy}' is not one of {list(TRUNCATION)}")
    out = []
    for x, y in examples:
        if not x or not y:
            continue
        if len(x) > max_src or len(y) > max_tgt:
            if policy == "drop":
                continue
            x, y = x[: max_src - 1] + x[-1:], y[: max_tgt - 1] + y[-1:]
        out.append((x, y))
    if not out:
        raise ConfigError(f"no {what} example fits data.max_source_len / max_target_len: raise them or cut")
    return out


def _batches(examples, batch_size: int, seed: int, bucket: int, rt, pad: int, start: int) -> ShuffledBatches:
    lengths = np.array([len(x) + len(y) for x, y in examples])
    collate = lambda rows: collate_seq2seq([examples[i] for i in rows], pad, start)
    return ShuffledBatches(len(examples), batch_size, collate, seed=seed, rank=rt.rank, world_size=rt.world_size,
                           lengths=lengths, bucket=bucket)  # fmt: skip


def _fixed_batches(examples, batch_size: int, pad: int, start: int, limit: int) -> list[dict]:
    """The first ``limit`` batches (0: all) of examples sorted by length: the same every evaluation."""
    order = np.argsort([len(x) + len(y) for x, y in examples], kind="stable")
    rows = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rows = rows[:limit] if limit else rows
    return [collate_seq2seq([examples[i] for i in r], pad, start) for r in rows]


def _train_tokenizer(texts: list[str], vocab_size: int, cap: int, seed: int) -> UnigramTokenizer:
    if cap and len(texts) > cap:
        pick = np.random.default_rng(seed).choice(len(texts), cap, replace=False)
        texts = [texts[i] for i in sorted(pick)]
    return UnigramTokenizer.train(texts, vocab_size=vocab_size)


def _new_model(cfg, rt):
    return rt.wrap(build_model(cfg))


def _describe_model(model) -> int:
    return sum(p.numel() for p in unwrap(model).parameters())


def _token_count(batch: dict) -> int:
    return int(batch["attention_mask"].sum() + batch["decoder_attention_mask"].sum())


def _items(data_factory: Callable[[], ShuffledBatches], grad_accum: int) -> Callable[[int], int]:
    """Real tokens (source + target) of the first n steps: the sampler replayed without the model."""

    def items(steps: int) -> int:
        replay = data_factory()
        return sum(_token_count(next(replay)) for _ in range(steps * grad_accum))

    return items


# --- Supervised: pairs -> model -------------------------------------------------------


def load_task_pairs(t: TaskConfig, d: Seq2SeqData, seed: int):
    """(train, validation, test) pairs of one task: group split, then train_fraction / max_train."""
    split = split_by_group(load_pairs(t.source), d.val_fraction, d.test_fraction, d.salt)
    train = split.train
    if t.train_fraction < 1.0:
        n = max(1, round(t.train_fraction * len(train)))
        pick = np.random.default_rng(seed).permutation(len(train))[:n]
        train = [train[i] for i in sorted(pick)]
    if t.max_train:
        train = train[: t.max_train]
    if not train or not split.validation or not split.test:
        raise ConfigError(f"{t.source}: the split leaves {len(train)} train / {len(split.validation)} validation / "
                          f"{len(split.test)} test pairs: every split needs some pairs")  # fmt: skip
    return train, split.validation, split.test


def _start(r, s: runner.Session, texts: Callable[[], list[str]], vocab_size: int, cap: int):
    """(tokenizer, model config, initial weights or None): a new tokenizer + the model section, a
    resumed run's own, or an init run's tokenizer, architecture and weights."""
    init = getattr(r, "init", SCRATCH)
    if s.resume:
        tok = load_tokenizer(s.run_dir)
        section = read_run_config(s.run_dir)["model"]
        return tok, model_config(section), None
    if init != SCRATCH:
        loaded = load_run(init, r.checkpoint)
        family = (loaded.config.get("model") or {}).get("family")
        if family != "seq2seq":
            raise ConfigError(f"init={init} is a {family} run: a seq2seq recipe starts from a seq2seq run")
        extra = sorted(set(r.model) - {"preset", "dropout"})
        if extra:
            raise ConfigError(f"with init={init} the architecture comes from that run; only model.dropout may be "
                              f"set, not {extra}")  # fmt: skip
        if "preset" in r.model:
            s.log(f"init={init}: the architecture is that run's (model.preset={r.model['preset']} is not used)")
        cfg = dataclasses.replace(loaded.model.config, **{k: v for k, v in r.model.items() if k == "dropout"})
        return loaded.tokenizer, cfg, loaded.model.state_dict()
    tok = _train_tokenizer(texts(), vocab_size, cap, r.train.seed)
    cfg = model_config(r.model, vocab_size=tok.vocab_size)
    cfg = dataclasses.replace(cfg, pad_id=tok.pad_id, eos_id=tok.eos_id, decoder_start_id=tok.pad_id)
    return tok, cfg, None


def _check_tokenizer(tok) -> None:
    if not isinstance(tok, UnigramTokenizer):
        raise ConfigError(f"a seq2seq run needs the unigram tokenizer (pad, </s>, sentinels), not {tok.kind}")


def _prepare(r: Seq2SeqRecipe, s: runner.Session) -> runner.Setup:
    rt, t, d, e = s.rt, r.train, r.data, r.eval
    tasks = task_configs(d.tasks)
    if not 0.0 <= r.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={r.label_smoothing} must be in [0, 1)")
    splits = {task.name: load_task_pairs(task, d, t.seed) for task in tasks}
    texts = lambda: [x for task in tasks for p in splits[task.name][0] for x in (p.src, p.tgt)]
    tok, cfg, init_state = _start(r, s, texts, d.vocab_size, d.tokenizer_texts)
    _check_tokenizer(tok)
    if d.max_source_len > cfg.block_size or d.max_target_len > cfg.block_size:
        raise ConfigError(f"data.max_source_len / max_target_len ({d.max_source_len} / {d.max_target_len}) exceed "
                          f"the model's context of {cfg.block_size}")  # fmt: skip

    def encode(task: TaskConfig, pairs: list[Pair]):
        return list(
            zip(tok.encode_batch([task.prefix + p.src for p in pairs]), tok.encode_batch([p.tgt for p in pairs]))
        )

    train_ex, val_ex = [], []
    for task in tasks:
        tr, va, _ = splits[task.name]
        train_ex += _limit_examples(encode(task, tr), d.max_source_len, d.max_target_len, d.truncation, "training")
        val_ex += _limit_examples(encode(task, va), cfg.block_size, cfg.block_size, "cut", "validation")
    resolved = {"model": {"family": family_of(cfg), **to_dict(cfg)}, "data": {"tasks": [to_dict(x) for x in tasks]}}
    s.start(merge(to_dict(r), resolved), tok)
    model = build_model(cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    model = rt.wrap(model)
    pad, start = cfg.pad_id, cfg.decoder_start_id
    make_data = lambda: _batches(train_ex, t.batch_size, t.seed, d.bucket, rt, pad, start)
    data = make_data()
    val_batches = _fixed_batches(val_ex, t.batch_size, pad, start, e.val_batches or t.eval_batches)
    val_tasks = [(task.name, task.prefix, task.metric, splits[task.name][1][: e.val_pairs]) for task in tasks]
    new_tokens = e.max_new_tokens or d.max_target_len

    def evaluate(ms):
        metrics = {"val_loss": mean_ce(ms["model"], val_batches, rt.device)}
        if e.val_pairs:  # every process decodes the same subset (the metrics are averaged across them)
            metrics.update(evaluate_pairs(unwrap(ms["model"]), tok, val_tasks, "val", 1, new_tokens, e.batch_size,
                                          1.0, d.max_source_len))  # fmt: skip
        return metrics

    loss = lambda ms, batch: seq2seq_loss(ms["model"], batch, r.label_smoothing)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=_token_count)  # fmt: skip
    n_params = _describe_model(model)

    def finish(trainer: Trainer) -> dict:
        # the best checkpoint, each task's test split, beam search (this recipe's eval settings: a resumed
        # run's overrides apply)
        figures = evaluate_seq2seq(s.run_dir, "best", "test", e.test_pairs, e.beams, e.batch_size, new_tokens)
        figures = {k: v for k, v in figures.items() if k.startswith("test_")}
        s.log("test (best checkpoint, beam " + str(e.beams) + "): " +
              "  ".join(f"{k} {v:.2f}" for k, v in figures.items()))  # fmt: skip
        return {"init": r.init, "best_" + t.best_metric: trainer.best, "test_beams": e.beams, **figures}

    sizes = " + ".join(f"{task.name}: {len(splits[task.name][0]):,} train / {len(splits[task.name][1]):,} val / "
                       f"{len(splits[task.name][2]):,} test pairs" for task in tasks)  # fmt: skip
    start_from = "random weights" if r.init == SCRATCH else r.init
    describe = f"from {start_from} | {sizes} | {len(train_ex):,} training examples | vocab {tok.vocab_size}"
    ref = next(make_data())
    fpt = runner.flops_per_item(loss, {"model": model}, ref, rt.device, _token_count(ref))
    return runner.Setup(trainer, data, n_params, describe, fpt, _items(make_data, t.grad_accum), finish)


def _check_supervised(r: Seq2SeqRecipe) -> None:
    task_configs(r.data.tasks)
    if r.train.best_metric != "val_loss" and not r.eval.val_pairs:
        raise ConfigError(f"train.best_metric={r.train.best_metric} needs eval.val_pairs > 0 (decoded validation)")


train = runner.entry_point("seq2seq", Seq2SeqRecipe, _prepare, check=_check_supervised)


# --- Pretraining: unlabelled text -> denoising ----------------------------------------


def pretrain_texts(d: PretrainData) -> tuple[list[str], list[str]]:
    """(training texts, validation texts): the source sides of each pair source's train and
    validation splits, at least ``min_words`` words, each text once."""
    train, val, seen = [], [], set()
    for name in d.sources:
        split = split_by_group(load_pairs(name), d.val_fraction, d.test_fraction, d.salt)
        for part, out in ((split.train, train), (split.validation, val)):
            kept = 0
            for p in part:
                if len(p.src.split()) >= d.min_words and p.src not in seen:
                    seen.add(p.src)
                    out.append(p.src)
                    kept += 1
                    if d.max_texts and out is train and kept >= d.max_texts:
                        break
    if not train or not val:
        raise ConfigError(f"{', '.join(d.sources)} leave {len(train)} training / {len(val)} validation texts of at "
                          f"least {d.min_words} words: lower data.min_words or add sources")  # fmt: skip
    return train, val


def _cut_sentences(sentences: list[list[int]], limit: int) -> list[list[int]]:
    """Whole sentences from the start while they fit in ``limit`` tokens (at least the first, cut)."""
    out, n = [], 0
    for s in sentences:
        if out and n + len(s) > limit:
            break
        out.append(s[:limit])
        n += len(s[:limit])
    return out


def noiser(r: PretrainRecipe, tok) -> Callable[[str, torch.Generator | None], tuple[list[int], list[int]]]:
    """text -> (input_ids, labels) of the recipe's objective, within the length limits."""
    d = r.data
    if r.objective not in OBJECTIVES:
        raise ConfigError(f"objective='{r.objective}' is not one of {list(OBJECTIVES)}")
    enc = lambda s: tok.encode(s, add_eos=False)
    if r.objective == "span":

        def span(text, g):
            # T5 sizes the raw text so that the corrupted input fits: roughly 1 + density of it survives
            ids = enc(text)[: int(d.max_source_len / (1 - r.span.noise_density * 0.8))]
            return span_corrupt(ids, tok.sentinel_ids, tok.eos_id, r.span, g)

        return span
    if r.objective == "bart":

        def bart(text, g):
            sentences = _cut_sentences(
                [enc(x) for x in split_sentences(text)], min(d.max_source_len, d.max_target_len) - 1
            )
            return bart_noise(sentences, tok.mask_id, tok.eos_id, r.bart, g)

        return bart

    def pegasus(text, g):
        sentences = split_sentences(text)
        kept = _cut_sentences([enc(x) for x in sentences], d.max_source_len - 1)
        return gap_sentence_example(sentences[: len(kept)], enc, tok.eos_id, r.pegasus, tok.token_mask_id,
                                    frozenset([tok.sentence_mask_id]), g)  # fmt: skip

    return pegasus


def _pretrain_prepare(r: PretrainRecipe, s: runner.Session) -> runner.Setup:
    rt, t, d = s.rt, r.train, r.data
    train_texts, val_texts = pretrain_texts(d)
    tok, cfg, _ = _start(r, s, lambda: train_texts, d.vocab_size, d.tokenizer_texts)
    _check_tokenizer(tok)
    noise = noiser(r, tok)
    if r.objective == "pegasus":  # gap sentences need two sentences or more
        train_texts = [x for x in train_texts if len(split_sentences(x)) >= 2]
        val_texts = [x for x in val_texts if len(split_sentences(x)) >= 2]
    s.start(merge(to_dict(r), {"model": {"family": family_of(cfg), **to_dict(cfg)}}), tok)
    model = _new_model(cfg, rt)
    pad, start = cfg.pad_id, cfg.decoder_start_id
    lim = lambda ex: (ex[0][: d.max_source_len - 1] + ex[0][-1:], ex[1][: d.max_target_len - 1] + ex[1][-1:])
    g_val = torch.Generator().manual_seed(t.seed + 1)
    val_ex = [lim(noise(x, g_val)) for x in val_texts[: t.batch_size * t.eval_batches]]
    val_ex = [ex for ex in val_ex if len(ex[0]) > 1 and len(ex[1]) > 1]
    val_batches = _fixed_batches(val_ex, t.batch_size, pad, start, t.eval_batches)
    # The noise is drawn when a batch is collated, from the global RNG: the checkpoint's RNG state
    # restores it, so a resumed run sees the same noise as an uninterrupted one.
    lengths = np.array([len(x) for x in train_texts])

    def collate(rows):
        return collate_seq2seq([lim(noise(train_texts[i], None)) for i in rows], pad, start)

    make_data = lambda: ShuffledBatches(len(train_texts), t.batch_size, collate, seed=t.seed, rank=rt.rank,
                                        world_size=rt.world_size, lengths=lengths, bucket=d.bucket)  # fmt: skip
    data = make_data()
    loss = lambda ms, batch: seq2seq_loss(ms["model"], batch)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    evaluate = lambda ms: {"val_loss": mean_ce(ms["model"], val_batches, rt.device)}
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=_token_count)  # fmt: skip
    with torch.random.fork_rng():
        ref = next(make_data())
    fpt = runner.flops_per_item(loss, {"model": model}, ref, rt.device, _token_count(ref))

    # Tokens per step: the reference batch's (replaying the noise of every step would cost as much
    # as the data side of training); an estimate, as the noised lengths vary from batch to batch.
    items = lambda steps: steps * t.grad_accum * _token_count(ref)

    describe = (f"{r.objective} denoising | {len(train_texts):,} train / {len(val_texts):,} val texts from "
                f"{', '.join(d.sources)} | vocab {tok.vocab_size}")  # fmt: skip
    finish = lambda trainer: {"objective": r.objective, "best_val_loss": trainer.best}
    return runner.Setup(trainer, data, _describe_model(model), describe, fpt, items, finish)


pretrain = runner.entry_point("seq2seq-pretrain", PretrainRecipe, _pretrain_prepare)

__all__ = [
    "PretrainRecipe",
    "Seq2SeqRecipe",
    "TaskConfig",
    "load_task_pairs",
    "pretrain",
    "pretrain_texts",
    "seq2seq_loss",
    "task_configs",
    "task_prefixes",
    "train",
]
