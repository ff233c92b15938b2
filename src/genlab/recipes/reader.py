"""Extractive-reader fine-tuning (task ``qa``): BERT's QA head on span-QA pairs from the corpora.

The pairs are :mod:`genlab.data.span_qa`'s templated questions over real text (FAQ answers,
FOLDOC / Jargon definitions, dict-elements entries), split by source item. Each (question,
passage) becomes one or more windows (:func:`genlab.rag.reader.windows`); a window that holds the
answer targets its first and last token, one that does not targets [CLS] (SQuAD 2.0). A share
``data.negatives`` of extra pairs puts a question beside another item's passage (all [CLS]), so
the reader learns to say that a passage does not answer. The loss is
:func:`genlab.rag.reader.span_extraction_loss`. Every evaluation reads the validation questions
with :class:`genlab.rag.reader.ExtractiveReader` (exact match and token F1 of the best span); the
best checkpoint is the highest ``val_f1``, and ``results.json`` has the test figures, per source.

``init`` as for ``encoder-classify`` (:mod:`genlab.runs.finetune`): ``minilm`` (the default),
``scratch``, a bert run or a Hugging Face BERT folder. :func:`genlab.runs.load_run` gives the QA
model back, and ``ExtractiveReader.from_run(RUN)`` reads with it at the run's window settings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from genlab.core.config import merge, to_dict
from genlab.core.errors import ConfigError
from genlab.data.batches import ShuffledBatches
from genlab.data.span_qa import KIND, SOURCES, SpanExample, span_qa_examples
from genlab.data.tokenized import real_tokens
from genlab.eval.qa import exact_match, token_f1
from genlab.models.bert import Bert, transfer_encoder
from genlab.rag.answer import Answer, OpenAIChat, RunChat, answer
from genlab.rag.reader import ExtractiveReader, Windows, span_extraction_loss, span_targets, windows
from genlab.rag.trust import answer_metrics
from genlab.rag.types import Hit
from genlab.recipes import runner
from genlab.runs.finetune import finetune_start
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import unwrap


@dataclass
class SpanQAData:
    sources: list[str] = field(default_factory=lambda: list(SOURCES))  # faq, foldoc, jargon, elements
    dictionary_limit: int = 1500  # pairs per dictionary (a seeded sample)
    max_train: int = 0  # training pairs kept (a seeded sample); 0: all
    max_eval: int = 200  # validation pairs read at each evaluation (a seeded sample); 0: all
    negatives: float = 0.25  # extra (question, another item's passage) pairs per training pair, no answer
    max_length: int = 256  # tokens of a window: [CLS] question [SEP] passage [SEP]
    stride: int = 64  # tokens two windows of one passage share
    max_answer_tokens: int = 48
    vocab_size: int = 8192  # init: scratch: a WordPiece vocabulary trained on the training texts
    tokenizer: str = ""  # init: scratch: or a folder with tokenizer.json, minilm


def _train_config() -> TrainConfig:
    return TrainConfig(best_metric="val_f1", best_mode="max")


@dataclass
class ReaderRecipe:
    task: str = "qa"
    init: str = "minilm"  # minilm | scratch | a bert run directory | a Hugging Face BERT folder
    checkpoint: str = "best"
    model: dict = field(default_factory=dict)  # scratch: the architecture; otherwise FINETUNE_FIELDS only
    data: SpanQAData = field(default_factory=SpanQAData)
    train: TrainConfig = field(default_factory=_train_config)


def _sample(items: list, n: int, seed: int) -> list:
    return items if not n or len(items) <= n else random.Random(seed).sample(items, n)


def training_windows(tok, examples: list[SpanExample], d: SpanQAData, seed: int) -> tuple[Windows, list, list]:
    """The windows of every pair (answer targets) and of the negative pairs ([CLS] targets)."""
    rng = random.Random(seed)
    out, starts, ends = Windows(), [], []
    negatives = [(e, rng.choice(examples)) for e in examples if rng.random() < d.negatives]
    pairs = [(e.question, e.context, (e.answer_start, e.answer_end)) for e in examples]
    pairs += [(e.question, o.context, (-1, -1)) for e, o in negatives if (o.source, o.item) != (e.source, e.item)]
    for question, context, span in pairs:
        w = windows(tok, question, [context], d.max_length, d.stride)
        s, z = span_targets(w, [span])
        out.input_ids += w.input_ids
        out.type_ids += w.type_ids
        out.offsets += w.offsets
        out.passage += w.passage
        starts += s
        ends += z
    return out, starts, ends


def read_scores(reader: ExtractiveReader, examples: list[SpanExample]) -> dict:
    """Exact match and token F1 of the reader's best span over each pair's own passage, overall and
    per source (the reader may abstain: its null score beats every span; that scores 0)."""
    rows = []
    for e in examples:
        spans = reader.spans(e.question, [e.context])
        text = spans[0].text if spans and (not reader.use_null or spans[0].score >= spans[0].null) else ""
        rows.append((e.source, exact_match(text, e.answer), token_f1(text, e.answer), not text))
    out = {"exact_match": float(np.mean([r[1] for r in rows])), "f1": float(np.mean([r[2] for r in rows])),
           "abstained": float(np.mean([r[3] for r in rows])), "n": len(rows)}  # fmt: skip
    for src in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == src]
        out[src] = {"exact_match": float(np.mean([r[1] for r in mine])), "f1": float(np.mean([r[2] for r in mine])),
                    "n": len(mine)}  # fmt: skip
    return out


def _check(r: ReaderRecipe) -> None:
    if not 0 <= r.data.negatives <= 1:
        raise ConfigError(f"data.negatives is a share of the training pairs in [0, 1], got {r.data.negatives}")


def _prepare(r: ReaderRecipe, s: runner.Session) -> runner.Setup:
    rt, t, d = s.rt, r.train, r.data
    examples = span_qa_examples(tuple(d.sources), d.dictionary_limit, t.seed)
    split = {name: [e for e in examples if e.split == name] for name in ("train", "validation", "test")}
    split["train"] = _sample(split["train"], d.max_train, t.seed)
    if not split["train"] or not split["validation"]:
        raise ConfigError(f"the sources {d.sources} give no training or no validation pairs: add sources")
    val = _sample(split["validation"], d.max_eval, t.seed)
    texts = lambda: [f"{e.question}\n{e.context}" for e in split["train"]]
    over, default = {"heads": ["qa"]}, {"preset": "bert-mini"}
    tok, cfg, init_state = finetune_start(r.task, r.init, r.checkpoint, r.model, d.tokenizer, d.vocab_size,
                                          s.run_dir, s.resume, texts, over, default)  # fmt: skip
    if d.max_length > cfg.block_size:
        raise ConfigError(f"data.max_length={d.max_length} is over the model's context of {cfg.block_size} tokens")
    w, starts, ends = training_windows(tok, split["train"], d, t.seed)
    s.start(merge(to_dict(r), {"model": {"family": "bert", **to_dict(cfg)}}), tok)
    model = Bert(cfg)
    fresh = transfer_encoder(model, init_state, r.init) if init_state is not None else []
    model = rt.wrap(model)
    starts_t, ends_t = torch.tensor(starts), torch.tensor(ends)
    n_tokens = np.array([len(ids) for ids in w.input_ids])

    def collate_rows(rows: np.ndarray) -> dict:
        b = w.batch(rows.tolist(), tok.pad_id)
        del b["context_mask"]
        return {**b, "start_positions": starts_t[rows], "end_positions": ends_t[rows]}

    data = ShuffledBatches(len(w), t.batch_size, collate_rows, seed=t.seed, rank=rt.rank, world_size=rt.world_size)

    def reader_of(models) -> ExtractiveReader:
        return ExtractiveReader(unwrap(models["model"]), tok, d.max_length, d.stride, d.max_answer_tokens)

    def evaluate(ms):
        sc = read_scores(reader_of(ms), val)
        return {"val_f1": sc["f1"], "val_exact_match": sc["exact_match"], "val_abstained": sc["abstained"]}

    loss = lambda ms, batch: span_extraction_loss(ms["model"], batch)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate, count=real_tokens)  # fmt: skip
    n_params = sum(q.numel() for q in model.parameters())

    def finish(trainer: Trainer) -> dict:
        reader = ExtractiveReader.from_run(s.run_dir)
        test = read_scores(reader, split["test"])
        s.log(f"test exact match {test['exact_match']:.3f}, token F1 {test['f1']:.3f} over {test['n']} pairs "
              f"({KIND}; best checkpoint) after {trainer.elapsed:.0f}s")  # fmt: skip
        return {"init": r.init, "data_kind": KIND, "test": test, "test_f1": test["f1"],
                "test_exact_match": test["exact_match"], "best_val_f1": trainer.best}  # fmt: skip

    fresh_parts = ", ".join(sorted({k.split(".")[0] for k in fresh})) or "none"
    start = "random weights" if r.init == "scratch" else f"{r.init} (new: {fresh_parts})"
    negs = sum(1 for z in starts if z == 0)
    sizes = (f"from {start} | {len(split['train']):,} train / {len(split['validation']):,} val / "
             f"{len(split['test']):,} test pairs ({KIND}) | {len(w):,} windows, {negs:,} with no answer")  # fmt: skip
    ref = next(ShuffledBatches(len(w), t.batch_size, collate_rows, seed=t.seed))
    fpt = runner.flops_per_item(loss, {"model": model}, ref, rt.device, ref["input_ids"].numel())

    def items(steps: int) -> int:  # padded tokens of the first ``steps`` steps, the sampler replayed
        replay = ShuffledBatches(len(w), t.batch_size, lambda rows: len(rows) * int(n_tokens[rows].max()), seed=t.seed)
        return sum(next(replay) for _ in range(steps * t.grad_accum))

    return runner.Setup(trainer, data, n_params, sizes, fpt, items, finish)


train_reader = runner.entry_point("qa", ReaderRecipe, _prepare, check=_check)


# ---------------------------------------------------------------- answering (genlab rag query --answer)

READERS = ("extractive", "generative")
Reply = Callable[[str, list[Hit], float | None], Answer]


def answerer(kind: str, model: str = "", llm_url: str = "", api_key: str = "", timeout: float = 60.0,
             max_new_tokens: int = 128, max_prompt_chars: int | None = None) -> Reply:  # fmt: skip
    """``(question, hits, threshold) -> Answer`` for ``genlab rag query --answer KIND``:
    ``extractive`` reads spans with a reader run (``--model RUN``, :func:`train_reader`);
    ``generative`` asks an OpenAI-compatible endpoint (``--llm-url``, ``--model`` names the
    endpoint's model; ``max_prompt_chars`` fits the passages to its context) or, without a URL, a
    genlab chat run (``--model RUN``, fitted to its context by its own tokenizer)."""
    if kind == "extractive":
        if not model:
            raise ConfigError("--answer extractive needs --model RUN: a reader run (genlab train rag/reader)")
        reader = ExtractiveReader.from_run(model)
        return lambda q, hits, t: reader.answer(q, hits, t)
    if kind == "generative":
        if llm_url:
            gen = OpenAIChat(llm_url, model, api_key, timeout, max_new_tokens, max_prompt_chars=max_prompt_chars)
        elif model:
            gen = RunChat(model, max_new_tokens=max_new_tokens)
        else:
            raise ConfigError(
                "--answer generative needs --llm-url URL (any OpenAI-compatible endpoint) "
                "or --model RUN (a genlab chat run)"
            )
        return lambda q, hits, t: answer(q, hits, gen, t)
    raise ConfigError(f"unknown reader '{kind}': use --answer {' or '.join(READERS)}")


def format_answer(a: Answer) -> str:
    """What ``genlab rag query --answer`` prints: the answer, then ``[n] document § section`` per citation."""
    return a.format()


def eval_answers(reply: Reply, mode: str = "hybrid", k: int = 3, threshold: float | None = None):
    """The answer hook of ``genlab rag eval``: (retriever, rows) -> exact match, token F1,
    groundedness and abstentions of ``reply`` over each row's top-``k`` ``mode`` hits
    (:func:`genlab.rag.trust.answer_metrics`; gold: the row's ``answers`` or the first sentence
    of its ``answer``)."""

    def run(retriever, rows: list[dict]) -> dict:
        result = answer_metrics(rows, lambda q: retriever.search(q, mode, k), reply, threshold)
        return {"mode": mode, "k": k, "threshold": threshold, **result}

    return run
