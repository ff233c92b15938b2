"""``genlab eval`` for encoders: a trained run (or ``minilm``, or a Hugging Face BERT folder) on its test split.

- ``classify``: a fortune-topic classifier run (``encoder-classify`` or ``encoder-distill``) on
  its own topic task's test (or val) split: accuracy and mean cross-entropy;
- ``code-search``: any bert run, ``minilm`` or a Hugging Face BERT folder ranks all test functions
  of the standard-library split for each docstring query by the cosine of mean-pooled embeddings
  (:func:`genlab.eval.retrieval.code_search`): MRR and recall@k. A pretraining or retrieval run
  on code uses its own split settings.
"""

from __future__ import annotations

from pathlib import Path

from genlab.core.config import from_dict
from genlab.core.errors import ConfigError
from genlab.data.corpora import CodeData, TopicData, code_split, topic_dataset
from genlab.data.tokenized import token_limit, tokenize
from genlab.eval.classification import classification_scores, classifier_logits
from genlab.eval.retrieval import code_search
from genlab.runs import is_run_dir, read_run_config
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
