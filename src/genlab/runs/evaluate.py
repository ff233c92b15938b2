"""``genlab eval`` for encoders: a trained run (or ``minilm``, or a Hugging Face BERT folder) on its test split.

- ``classify``: a fortune-topic classifier run (``encoder-classify`` or ``encoder-distill``) on
  its own topic task's test (or val) split: accuracy and mean cross-entropy;
- ``code-search``: any bert run, ``minilm`` or a Hugging Face BERT folder ranks all test functions
  of the standard-library split for each docstring query by the cosine of mean-pooled embeddings
  (:func:`genlab.eval.retrieval.code_search`): MRR and recall@k. A pretraining or retrieval run
  on code uses its own split settings.

And for encoder-decoders (:func:`evaluate_seq2seq`): a ``seq2seq`` run's best checkpoint decodes
each of its tasks' test split (the group split the run was trained with) with beam search:
sacreBLEU and chrF for translation tasks, ROUGE-1/2/L F1 for summaries. The recipe's results.json
holds the same figures, computed by the same function at the end of training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genlab.core.config import from_dict
from genlab.core.errors import ConfigError
from genlab.data.corpora import CodeData, TopicData, code_split, topic_dataset
from genlab.data.parallel import Pair, split_by_group
from genlab.data.sources import load_pairs
from genlab.data.tokenized import token_limit, tokenize
from genlab.eval.classification import classification_scores, classifier_logits
from genlab.eval.retrieval import code_search
from genlab.eval.seq2seq import rouge, translation_metrics
from genlab.generation.decode import GenerationConfig, generate
from genlab.runs import is_run_dir, load_run, read_run_config
from genlab.runs.encoders import MINILM, Encoder, load_encoder

ENCODER_TASKS = ("encoder-pretrain", "encoder-classify", "encoder-distill", "encoder-retrieval")
CLASSIFIER_TASKS = ("encoder-classify", "encoder-distill")
EVAL_TASKS = ("classify", "code-search")


def load_classifier_run(run_dir: Path, which: str = "best") -> tuple[Encoder, TopicData]:
    """The fortune-topic classifier of an ``encoder-classify`` or ``encoder-distill`` run and its data settings."""
    recipe = read_run_config(run_dir)
    task = recipe.get("task", "lm")
    if task not in CLASSIFIER_TASKS:
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
    enc, d = load_classifier_run(Path(run_dir), which)
    ds = topic_dataset(d)
    if split not in ("test", "val"):
        raise ConfigError(f"split must be 'test' or 'val', got {split!r}")
    part = getattr(ds, split)
    texts, labels = (part.texts[:limit], part.labels[:limit]) if limit else (part.texts, part.labels)
    if enc.model.config.num_labels != len(ds.classes):
        raise ConfigError(f"{run_dir}: the model has {enc.model.config.num_labels} classes, its data {len(ds.classes)}")
    done = tokenize(enc.tokenizer, texts, token_limit(d.max_length, enc.model.config.block_size, "data"), "warn",
                    "texts")  # fmt: skip
    s = classification_scores(classifier_logits(enc.model, enc.tokenizer, done, batch_size), labels)
    return {"task": "classify", "split": split, "accuracy": s["accuracy"], "loss": s["loss"], "n": len(texts),
            "classes": len(ds.classes)}  # fmt: skip


def is_encoder_run(model: str | Path) -> bool:
    """True for ``minilm`` and for run directories of the encoder tasks (``genlab eval`` dispatch)."""
    if str(model) == MINILM:
        return True
    return is_run_dir(model) and read_run_config(model).get("task") in ENCODER_TASKS


def evaluate_encoder(
    model: str | Path,
    task: str | None = None,
    which: str = "best",
    limit: int = 0,
    batch_size: int = 64,
    max_length: int | None = None,
    code: CodeData | None = None,
) -> dict:
    """``classify`` or ``code-search`` (module docstring); ``task`` None: the run's own."""
    path = Path(model)
    recipe = read_run_config(path) if is_run_dir(path) else {}
    run_task = recipe.get("task")
    if task is None:
        task = "classify" if run_task in CLASSIFIER_TASKS else "code-search"
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
    return code_search(load_encoder(model, which), pairs[:limit] if limit else pairs, batch_size, max_length)


# --- Encoder-decoders -----------------------------------------------------------------

SEQ2SEQ_TASKS = ("seq2seq",)
#: each metric kind's main figure; ``<split>_score`` is their mean over a run's tasks
MAIN_FIGURE = {"bleu": "bleu", "rouge": "rougeL"}


def decode_texts(model, tok, sources: list[str], beams: int = 1, max_new_tokens: int = 64, batch_size: int = 32,
                 length_penalty: float = 1.0, max_source_len: int = 0) -> list[str]:  # fmt: skip
    """Greedy (``beams`` 1) or beam-search output text for each source. A source longer than the
    encoder's context (or ``max_source_len``) keeps its first tokens and its </s>: the 'truncate' policy."""
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, num_beams=beams,
                           length_penalty=length_penalty, eos_id=tok.eos_id, context="truncate")  # fmt: skip
    block = model.config.block_size
    limit = min(block, max_source_len) if max_source_len else block
    ids = [x[: limit - 1] + x[-1:] if len(x) > limit else x for x in tok.encode_batch(sources)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths decode together
    out = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, gens in zip(chunk, generate(model, [ids[i] for i in chunk], cfg)):
            out[i] = tok.decode(gens[0].tokens, skip_special_tokens=True).strip()
    return out


def score_texts(metric: str, hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """``bleu``: BLEU, chrF (and the pair count); ``rouge``: ROUGE-1/2/L F1."""
    if metric not in MAIN_FIGURE:
        raise ConfigError(f"metric '{metric}' is not one of {list(MAIN_FIGURE)}")
    return translation_metrics(hypotheses, references) if metric == "bleu" else rouge(hypotheses, references)


def evaluate_pairs(model, tok, tasks: list[tuple[str, str, str, list[Pair]]], split: str, beams: int = 1,
                   max_new_tokens: int = 64, batch_size: int = 32, length_penalty: float = 1.0,
                   max_source_len: int = 0) -> dict[str, float]:  # fmt: skip
    """``tasks``: (name, prefix, metric, pairs). Returns ``{split}_{name}_{figure}`` per task,
    ``{split}_{figure}`` too when there is one task, and ``{split}_score``: the mean of each task's
    main figure (BLEU or ROUGE-L)."""
    out: dict[str, float] = {}
    mains = []
    for name, prefix, metric, pairs in tasks:
        hyps = decode_texts(model, tok, [prefix + p.src for p in pairs], beams, max_new_tokens, batch_size,
                            length_penalty, max_source_len)  # fmt: skip
        figures = score_texts(metric, hyps, [p.tgt for p in pairs])
        mains.append(figures[MAIN_FIGURE[metric]])
        for k, v in figures.items():
            out[f"{split}_{name}_{k}"] = v
            if len(tasks) == 1:
                out[f"{split}_{k}"] = v
    out[f"{split}_score"] = float(np.mean(mains))
    return out


def seq2seq_split(recipe: dict, task: dict, split: str) -> list[Pair]:
    """The ``split`` pairs (train, validation, test) of one task of a seq2seq run's resolved recipe."""
    data = recipe.get("data") or {}
    parts = split_by_group(load_pairs(task["source"]), data.get("val_fraction", 0.05),
                           data.get("test_fraction", 0.05), data.get("salt", "genlab"))  # fmt: skip
    return getattr(parts, split)


def evaluate_seq2seq(run_dir: str | Path, which: str = "best", split: str = "test", limit: int = 0,
                     beams: int | None = None, batch_size: int | None = None,
                     max_new_tokens: int | None = None) -> dict:  # fmt: skip
    """BLEU/chrF or ROUGE of a seq2seq run on each task's ``split`` (test or validation), decoded
    with the run's ``eval`` settings (``beams``, ``batch_size``, ``max_new_tokens`` override them); ``limit``: the
    first N pairs of each task (0: the run's eval.test_pairs, or all)."""
    run_dir = Path(run_dir)
    recipe = read_run_config(run_dir)
    if recipe.get("task") not in SEQ2SEQ_TASKS:
        raise ConfigError(f"{run_dir} is a '{recipe.get('task', 'lm')}' run; genlab eval scores supervised seq2seq "
                          "runs (a seq2seq-pretrain run: fine-tune it first with init=RUN)")  # fmt: skip
    if split not in ("test", "validation"):
        raise ConfigError(f"split must be 'test' or 'validation', got {split!r}")
    model, tok, _ = load_run(run_dir, which)
    e, data = recipe.get("eval") or {}, recipe.get("data") or {}
    beams = e.get("beams", 4) if beams is None else beams
    if beams < 1:
        raise ConfigError(f"beams must be at least 1, got {beams}")
    n = limit or e.get("test_pairs", 0) or None
    tasks = [(t.get("name") or Path(t["source"]).stem, t.get("prefix", ""), t.get("metric", "bleu"),
              seq2seq_split(recipe, t, split)[:n]) for t in data.get("tasks") or []]  # fmt: skip
    if not tasks:
        raise ConfigError(f"{run_dir}/config.yaml lists no data.tasks: not a complete seq2seq run")
    new_tokens = max_new_tokens or e.get("max_new_tokens") or data.get("max_target_len", 64)
    figures = evaluate_pairs(model, tok, tasks, split, beams, new_tokens,
                             batch_size or e.get("batch_size", 32), e.get("length_penalty", 1.0),
                             data.get("max_source_len", 0))  # fmt: skip
    return {"task": "seq2seq", "split": split, "beams": beams, **figures}


# --- image classifiers (CNN, ViT, hybrid) and forecasters -------------------------------

RUN_TASKS = ("classify", "forecast")


def _forecast_predict(model):
    import numpy as np
    import torch

    def predict(x):
        with torch.no_grad():
            return {k: v.numpy() for k, v in model.predict(torch.from_numpy(np.asarray(x, np.float32))).items()}

    return predict


def evaluate_run(run_dir: Path, which: str = "best", baselines: bool = False) -> dict:
    """``genlab eval RUN`` for the ``classify`` task (test accuracy and loss of a CNN, ViT or hybrid
    run) and the ``forecast`` task (MASE, sMAPE and interval coverage on the test span; with
    ``baselines``, seasonal-naive, ETS and SARIMA fitted on the same training span)."""
    import torch

    from genlab.data.images import load_images, to_float
    from genlab.data.series import SERIES, load_series, origins, split_series
    from genlab.eval import forecast as fc
    from genlab.objectives.classification import evaluate_classifier as score_images
    from genlab.runs import load_run

    recipe = read_run_config(run_dir)
    task = recipe.get("task", "lm")
    if task not in RUN_TASKS:
        raise ConfigError(f"{run_dir} is a '{task}' run; this evaluation covers {list(RUN_TASKS)}")
    model = load_run(run_dir, which).model
    d = recipe.get("data") or {}
    if task == "classify":
        x, y = load_images(d.get("source", "fashion-mnist"), "test")
        s = score_images(model, to_float(torch.from_numpy(x)), torch.from_numpy(y.astype("int64")))
        return {"task": "classify", "split": "test", "accuracy": s["accuracy"], "loss": s["loss"], "n": len(x)}
    cfg = model.config
    name = d.get("series", "sunspots")
    values, _ = load_series(name)
    split = split_series(values, cfg.window, cfg.horizon, d.get("val_fraction", 0.1), d.get("test_fraction", 0.2), name)
    m = d.get("period") or SERIES[name].period
    test = origins(split, "test", cfg.window, cfg.horizon)
    out = {"task": "forecast", "series": name, "period": m, "test_origins": len(test), "horizon": cfg.horizon,
           "model": fc.model_scores(_forecast_predict(model), split, test, cfg.window, cfg.horizon, m)}  # fmt: skip
    if baselines:
        out["baselines"] = fc.baselines(split, test, cfg.horizon, m)
    return out
