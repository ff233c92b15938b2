"""``genlab probe``: bias probes and zero-shot classification of trained or packaged models.

- :func:`bias_report`: the WEATs of Caliskan et al. 2017 (:mod:`genlab.eval.bias`) on an encoder
  (``minilm``, a bert run directory, a Hugging Face BERT folder) in two views, and the
  occupation-pronoun completion probe on a causal LM run:

  * ``sentence``: each word embedded alone as a sentence ([CLS] word [SEP], mean-pooled,
    :func:`genlab.eval.embeddings.embed_texts`); the paper used GloVe word vectors, this is the
    closest a sentence encoder offers;
  * ``static``: the encoder's input token embeddings, averaged over the word's WordPieces (no
    context, no position).

  A word is *missing* when its WordPieces include ``[UNK]``. An uncased vocabulary (MiniLM's)
  lowercases the names.
- :func:`zero_shot_report`: the fortune-topic task (``fortunes-topics``, :mod:`genlab.data.text_tasks`)
  classified from frozen embeddings of a model, zero-shot (label names or hand-written descriptions,
  the style picked on validation) and few-shot (k per class), beside a fine-tuned classifier run
  scored on the same test split.

The markdown tables are built here; ``genlab probe`` prints them (or the JSON).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genlab.core.config import to_dict
from genlab.core.errors import ConfigError
from genlab.data.corpora import TopicData, topic_dataset
from genlab.data.tokenized import token_limit, tokenize
from genlab.eval import bias, zero_shot
from genlab.eval.classification import classifier_logits
from genlab.eval.embeddings import embed_texts
from genlab.runs import is_run_dir, load_run, read_run_config
from genlab.runs.encoders import Encoder, load_encoder
from genlab.runs.evaluate import load_classifier_run

VIEWS = ("sentence", "static")
TASKS = ("fortunes-topics",)


# ------------------------------------------------------------------ bias


def word_views(enc: Encoder) -> dict[str, object]:
    """The two word-vector views of an encoder (module docstring): view -> words -> (N, C)."""
    tok = enc.tokenizer
    table = enc.model.tok_emb.weight.detach().double()  # (V, E)

    def sentence(words: list[str]) -> np.ndarray:
        return embed_texts(enc, list(words), batch_size=64)[0]

    def static(words: list[str]) -> np.ndarray:
        return np.stack([table[torch.tensor(tok.encode(w))].mean(0).numpy() for w in words])

    return {"sentence": sentence, "static": static}


def is_missing(enc: Encoder):
    """word -> True when the encoder's tokenizer maps part of it to [UNK] (or to nothing)."""
    tok = enc.tokenizer
    return lambda w: (not tok.encode(w)) or tok.unk_id in tok.encode(w)


def run_weats(
    model: str, tests: Sequence[str] = (), samples: int = 100_000, seed: int = 0, checkpoint: str = "best"
) -> dict:
    """Every WEAT (or ``tests``) on the encoder ``model``, in both views: {"model", "rows": [...]}."""
    keys = list(tests) or list(bias.WEAT_TESTS)
    unknown = [k for k in keys if k not in bias.WEAT_TESTS]
    if unknown:
        raise ConfigError(f"no WEAT named '{unknown[0]}': use {', '.join(bias.WEAT_TESTS)}")
    enc = load_encoder(model, checkpoint)
    views, missing = word_views(enc), is_missing(enc)
    rows = []
    for key in keys:
        for view in VIEWS:
            r = bias.run_weat(bias.WEAT_TESTS[key], views[view], missing, samples=samples, seed=seed)
            rows.append({"view": view, **to_dict(r)})
    return {"model": enc.source, "vocab_size": enc.tokenizer.vocab_size, "samples": samples, "seed": seed,
            "rows": rows}  # fmt: skip


def run_pronouns(lm: str | Path, checkpoint: str = "best") -> dict:
    """The occupation-pronoun completion probe on a causal LM run (gpt family)."""
    path = Path(lm)
    if not is_run_dir(path):
        raise ConfigError(f"{lm} is not a genlab run directory (config.yaml): --lm needs a trained gpt run")
    family = (read_run_config(path).get("model") or {}).get("family")
    if family != "gpt":
        raise ConfigError(f"{lm} is a {family or 'unknown'} run; the pronoun probe needs a causal LM (gpt) run")
    model, tok, config = load_run(path, checkpoint)
    result = bias.pronoun_probe(model, tok.encode)
    return {"lm": str(path), "tokenizer": tok.kind, "source": (config.get("data") or {}).get("source"),
            "templates": result.templates, "summary": result.summary,
            "rows": [to_dict(r) for r in result.rows]}  # fmt: skip


def bias_report(
    model: str | None = None,
    lm: str | None = None,
    tests: Sequence[str] = (),
    samples: int = 100_000,
    seed: int = 0,
    checkpoint: str = "best",
) -> dict:
    """{"weat": ..., "pronouns": ...}: the WEATs of an encoder and/or the pronoun probe of an LM.
    A gpt run directory given as ``model`` is taken as the LM."""
    if model is not None and is_run_dir(model) and (read_run_config(model).get("model") or {}).get("family") == "gpt":
        if lm is not None:
            raise ConfigError(f"{model} is a gpt run and --lm names another: give the encoder first, the LM with --lm")
        model, lm = None, model
    if model is None and lm is None:
        raise ConfigError("nothing to probe: name an encoder (minilm or a bert run) and/or an LM run with --lm")
    out: dict = {}
    if model is not None:
        out["weat"] = run_weats(model, tests, samples, seed, checkpoint)
    if lm is not None:
        out["pronouns"] = run_pronouns(lm, checkpoint)
    return out


def _p(p: float, n: int, exact: bool) -> str:
    if p == 0.0:
        return f"< {1 / n:.0e}" if not exact else "0 (exact)"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def weat_markdown(weat: dict) -> str:
    """The WEAT table: one row per test and view."""
    lines = [
        f"WEAT on {weat['model']} (Caliskan et al. 2017 word lists; p: one-sided permutation test, "
        f"exact or {weat['samples']:,} random partitions, seed {weat['seed']})",
        "",
        "| test | targets / attributes | view | n (X, Y, A, B) | s(X,Y,A,B) | d | p | paper d (GloVe) | missing |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in weat["rows"]:
        n = f"{r['n_x']}, {r['n_y']}, {r['n_a']}, {r['n_b']}"
        gone = ", ".join(r["missing"] + [f"({w})" for w in r["dropped"]]) or "-"
        paper = "" if math.isnan(r["paper_d"]) else f"{r['paper_d']:.2f}"
        p = _p(r["p_value"], r["partitions"], r["exact"])
        lines.append(f"| {r['test']} | {r['title']} | {r['view']} | {n} | {r['statistic']:.3f} | "
                     f"{r['effect_size']:.2f} | {p} | {paper} | {gone} |")  # fmt: skip
    return "\n".join(lines)


def pronoun_markdown(pro: dict) -> str:
    """The pronoun table: one row per occupation and control word, then the summary."""
    s = pro["summary"]
    lines = [
        f"Pronoun completion on {pro['lm']} ({pro['tokenizer']} tokenizer, trained on {pro['source']}); "
        f'{s["templates"]} templates, e.g. "{pro["templates"][0]}"',
        "",
        "| word | log P(he) - log P(she) | P(he) | P(she) | P(they) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in pro["rows"]:
        word = f"{r['word']} (control)" if r["control"] else r["word"]
        lines.append(f"| {word} | {r['log_ratio']:+.2f} | {r['p_he']:.4f} | {r['p_she']:.4f} | {r['p_they']:.4f} |")
    lines += [
        "",
        f"Occupations: {s['occupations']}; mean log-ratio {s['mean_log_ratio']:+.2f} (median "
        f"{s['median_log_ratio']:+.2f}); {s['lean_he']} lean he, {s['lean_she']} lean she; mean share of "
        f"'they' among the three {s['mean_share_they']:.3f}. Most 'he': {', '.join(s['most_he'])}; "
        f"most 'she': {', '.join(s['most_she'])}.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ zero-shot


def _embed(enc: Encoder, texts: list[str], batch_size: int) -> np.ndarray:
    return embed_texts(enc, texts, batch_size=batch_size)[0]


def finetuned_scores(run: str | Path, checkpoint: str = "best", batch_size: int = 64) -> tuple[dict, TopicData]:
    """Test accuracy and macro-F1 of a fortune-topic classifier run on its own test split, and the
    run's data settings (which give the split)."""
    enc, d = load_classifier_run(Path(run), checkpoint)
    ds = topic_dataset(d)
    if enc.model.config.num_labels != len(ds.classes):
        raise ConfigError(f"{run}: the model has {enc.model.config.num_labels} classes, its data {len(ds.classes)}")
    done = tokenize(enc.tokenizer, ds.test.texts, token_limit(d.max_length, enc.model.config.block_size, "data"),
                    "warn", "test texts")  # fmt: skip
    pred = classifier_logits(enc.model, enc.tokenizer, done, batch_size).argmax(-1).numpy()
    return {"run": str(run), **zero_shot.scores(pred, ds.test.labels, len(ds.classes))}, d


def zero_shot_report(
    model: str,
    task: str = "fortunes-topics",
    finetuned: str | None = None,
    ks: Sequence[int] = (1, 4, 16),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    batch_size: int = 64,
    checkpoint: str = "best",
) -> dict:
    """Zero-shot, few-shot (k per class) and, with ``finetuned``, a fine-tuned classifier's test
    accuracy and macro-F1 on ``task``; every choice (label style, L2 strength) on validation. With a
    fine-tuned run the task takes that run's data settings, so all rows share its test split."""
    if task not in TASKS:
        raise ConfigError(f"no zero-shot task '{task}': use {', '.join(TASKS)}")
    data, tuned = TopicData(), None
    if finetuned is not None:  # first: a wrong run fails before the embedding pass
        cfg = read_run_config(finetuned) if is_run_dir(finetuned) else {}
        scores, data = finetuned_scores(finetuned, checkpoint, batch_size)
        tuned = {**scores, "init": cfg.get("init"), "steps": (cfg.get("train") or {}).get("max_steps")}
    ds = topic_dataset(data)
    K = len(ds.classes)
    enc = load_encoder(model, checkpoint)
    t0 = time.perf_counter()
    emb = {name: _embed(enc, getattr(ds, name).texts, batch_size) for name in ("train", "val", "test")}
    styles = {}
    for style in ("name", "description"):
        labels = _embed(enc, zero_shot.label_texts(ds.classes, style), batch_size)
        styles[style] = {
            "val": zero_shot.scores(zero_shot.zero_shot_predict(emb["val"], labels), ds.val.labels, K),
            "test": zero_shot.scores(zero_shot.zero_shot_predict(emb["test"], labels), ds.test.labels, K),
        }
    chosen = max(styles, key=lambda s: styles[s]["val"]["accuracy"])
    split = lambda name: zero_shot.Split(emb[name], getattr(ds, name).labels)
    few = zero_shot.few_shot(split("train"), split("val"), split("test"), K, ks, seeds)
    out = {"task": task, "model": enc.source, "data": to_dict(data), "classes": ds.classes, "chance": 1.0 / K,
           "sizes": {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)},
           "zero_shot": {"chosen": chosen, "styles": styles}, "few_shot": few,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    if tuned is not None:
        out["finetuned"] = {**tuned, "train_examples": len(ds.train)}
    return out


def zero_shot_markdown(rep: dict) -> str:
    """The zero-shot table: test accuracy and macro-F1 of each method."""
    n = rep["sizes"]
    lines = [
        f"Fortune topics ({len(rep['classes'])} classes, chance {rep['chance']:.3f}; {n['train']:,} train / "
        f"{n['val']:,} val / {n['test']:,} test), frozen embeddings of {rep['model']}; test split",
        "",
        "| method | training examples | test accuracy | test macro-F1 | chosen on validation |",
        "|---|---:|---:|---:|---|",
    ]
    z = rep["zero_shot"]
    for style, r in z["styles"].items():
        mark = "picked (val acc {:.3f})".format(r["val"]["accuracy"]) if style == z["chosen"] else (
            "val acc {:.3f}".format(r["val"]["accuracy"]))  # fmt: skip
        lines.append(f"| zero-shot, label {style}s | 0 | {r['test']['accuracy']:.3f} | {r['test']['macro_f1']:.3f} "
                     f"| {mark} |")  # fmt: skip
    K = len(rep["classes"])
    for r in rep["few_shot"]:
        lines.append(f"| few-shot logistic probe, k={r['k']} ({len(r['seeds'])} seeds) | {r['k'] * K} | "
                     f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | {r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f} "
                     f"| C={r['C']:g} |")  # fmt: skip
    if "finetuned" in rep:
        f = rep["finetuned"]
        lines.append(f"| fine-tuned classifier ({f['run']}, init {f['init']}, {f['steps']} steps) | "
                     f"{f['train_examples']:,} | {f['accuracy']:.3f} | {f['macro_f1']:.3f} | "
                     "best val-loss checkpoint |")  # fmt: skip
    return "\n".join(lines)
