"""genlab serve under concurrent streams vs a FastAPI wrapper around transformers generate().

    python benchmarks/serve.py [--max-tokens 32] [--levels 1,4,16,32] [--threads 1] [--rounds 3]

Prints one JSON object. The model is the gpt2-small architecture (124M parameters, random
weights, fp32) in a run directory with a byte-level BPE tokenizer trained on tinyshakespeare
and padded with unused tokens to GPT-2's 50,257 (no hub: GPT-2's own vocabulary cannot be had
offline). The same weights go to transformers' GPT2LMHeadModel (genlab convert genlab-to-hf).

For each level c of concurrent streams, c clients (the official openai client, asyncio) each
stream one greedy completion of ``--max-tokens`` tokens from a different prompt of 16-40 tokens
(lines of tinyshakespeare: real text). Measured per level, for each server:

- total tokens/s: tokens received by all streams / wall time from the first request to the last [DONE];
- time to first token (TTFT) p50/p95 over the streams;
- inter-token latency (ITL) p50/p95 over every gap between two chunks of a stream.

The baseline server is how most small projects serve a transformers model: FastAPI, one
``model.generate()`` per request in a worker thread, streamed with ``TextIteratorStreamer``
(no batching across requests). ``sample_tokens_per_s`` is ``genlab sample``'s path
(:func:`genlab.generation.decode.generate`, greedy, one prompt) on the same model, in the same
run. Both servers run in this process, one after the other, on loopback.

A shared machine's speed drifts from minute to minute, so the genlab side runs ``--rounds``
times, each round measuring ``genlab sample`` just before and just after the 1-stream level
and then every level; each ratio is taken within a round and the JSON gives every round's
ratios and their median (the per-level figures are those of the median round by 16-vs-1
ratio). The transformers server runs once, after them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import openai
import torch
import uvicorn

from genlab.core.config import save_yaml
from genlab.core.registry import preset
from genlab.generation.decode import GenerationConfig, generate
from genlab.models.gpt import GPT
from genlab.recipes.convert import converted_recipe, genlab_to_hf
from genlab.serving.app import create_app
from genlab.serving.models import load_model
from genlab.tokenizers import BPETokenizer
from genlab.training.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TEXT = [ROOT.parent / "shared" / "data" / "tinyshakespeare.txt", ROOT / "tests" / "fixtures" / "shakespeare-40k.txt"]


def corpus() -> str:
    for path in TEXT:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    sys.exit("no tinyshakespeare text found")


def build_run(out: Path, text: str) -> Path:
    """A gpt2-small run directory with random weights and a BPE tokenizer of 50,257 tokens."""
    cfg = preset("gpt2")
    tok = BPETokenizer.train(text, vocab_size=cfg.vocab_size, min_frequency=1)
    missing = cfg.vocab_size - tok.vocab_size
    if missing > 0:
        tok.hf.add_tokens([f"<|unused{i}|>" for i in range(missing)])
    out.mkdir(parents=True)
    tok.save(out)
    save_yaml(converted_recipe(cfg, tok), out / "config.yaml")
    torch.manual_seed(0)
    save_checkpoint(out / "checkpoints", 0, {"model": GPT(cfg)}, {}, ("last", "best"))
    return out


def hf_app(hf_dir: Path):
    """FastAPI around transformers generate(), one call per request, streamed token by token."""
    from fastapi import FastAPI
    from sse_starlette import EventSourceResponse
    from transformers import AutoTokenizer, GPT2LMHeadModel, TextIteratorStreamer

    model = GPT2LMHeadModel.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(hf_dir)
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(body: dict):
        ids = torch.tensor([tok.encode(body["prompt"])])
        streamer = TextIteratorStreamer(tok, skip_prompt=True)
        n = body["max_tokens"]
        kwargs = dict(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
            do_sample=False, streamer=streamer, pad_token_id=0,
        )  # fmt: skip
        threading.Thread(target=lambda: model.generate(**kwargs), daemon=True).start()

        async def stream():
            it = iter(streamer)
            while True:
                piece = await asyncio.to_thread(next, it, None)
                if piece is None:
                    break
                chunk = {"id": "x", "object": "text_completion", "created": 0, "model": "hf",
                         "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]}  # fmt: skip
                yield {"data": json.dumps(chunk)}
            usage = {"prompt_tokens": ids.size(1), "completion_tokens": n, "total_tokens": ids.size(1) + n}
            final = {"id": "x", "object": "text_completion", "created": 0, "model": "hf", "choices": [], "usage": usage}
            yield {"data": json.dumps(final)}
            yield {"data": "[DONE]"}

        return EventSourceResponse(stream())

    return app


class Server:
    def __init__(self, app, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}/v1"

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=60)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def level(url: str, model: str, prompts: list[str], max_tokens: int) -> dict:
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)

    async def one(prompt: str):
        start = time.perf_counter()
        stream = await client.completions.create(
            model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        times, tokens = [], 0
        async for chunk in stream:
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            if chunk.choices and chunk.choices[0].text:
                times.append(time.perf_counter())
        return start, times, tokens

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in prompts))
    wall = time.perf_counter() - t0
    await client.close()
    ttft = [times[0] - start for start, times, _ in results if times]
    itl = [b - a for _, times, _ in results for a, b in zip(times, times[1:])]
    total = sum(t for _, _, t in results)
    print(f"{url} {len(prompts)} streams: {total / wall:.1f} tok/s", file=sys.stderr, flush=True)  # progress
    return {
        "streams": len(prompts),
        "tokens": total,
        "seconds": round(wall, 2),
        "tokens_per_s": round(total / wall, 1),
        "ttft_p50_ms": round(1000 * pct(ttft, 0.5), 1),
        "ttft_p95_ms": round(1000 * pct(ttft, 0.95), 1),
        "itl_p50_ms": round(1000 * pct(itl, 0.5), 1),
        "itl_p95_ms": round(1000 * pct(itl, 0.95), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--levels", default="1,4,16,32")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of genlab sample and genlab serve")
    ap.add_argument("--no-transformers", action="store_true", help="skip the transformers server")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    levels = [int(x) for x in args.levels.split(",")]
    load_start = [round(x, 2) for x in os.getloadavg()]
    text = corpus()
    lines = [line for line in text.splitlines() if len(line) > 30]
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(Path(tmp) / "gpt2-random", text)
        genlab_to_hf(run, Path(tmp) / "hf")
        served = load_model(run, "gpt2-random", max_batch=max(levels))
        tok, model = served.tokenizer, served.engine.model

        def prompt(i: int) -> str:  # 16-40 tokens of real text, different per stream
            words, want = [], 16 + (i * 7) % 25
            j = i * 11
            while len(tok.encode(" ".join(words))) < want:
                words.extend(lines[j % len(lines)].split())
                j += 1
            ids = tok.encode(" ".join(words))[:want]
            return tok.decode(ids)

        prompts = [prompt(i) for i in range(max(levels))]
        cfg = GenerationConfig(max_new_tokens=args.max_tokens, temperature=0.0)
        generate(model, [tok.encode(prompts[0])], GenerationConfig(max_new_tokens=4, temperature=0.0))  # warm-up

        def sample_rate(p: str) -> float:
            start = time.perf_counter()
            n = len(generate(model, [tok.encode(p)], cfg)[0][0].tokens)
            return n / (time.perf_counter() - start)

        one, top = str(levels[0]), "16" if 16 in levels else str(levels[-1])
        rounds = []
        with Server(create_app({"gpt2-random": served}), 8931) as s:
            asyncio.run(level(s.url, "gpt2-random", prompts[:1], 4))  # warm-up
            for _ in range(args.rounds):
                g, before = {}, sample_rate(prompts[0])  # the 1-stream level's prompt
                g[one] = asyncio.run(level(s.url, "gpt2-random", prompts[:1], args.max_tokens))
                after = sample_rate(prompts[0])
                for c in levels[1:]:
                    g[str(c)] = asyncio.run(level(s.url, "gpt2-random", prompts[:c], args.max_tokens))
                sample = (before + after) / 2
                rounds.append(
                    {
                        "sample_tokens_per_s": round(sample, 1),
                        "genlab": g,
                        f"genlab_{top}_vs_genlab_{one}": round(g[top]["tokens_per_s"] / g[one]["tokens_per_s"], 2),
                        f"genlab_{one}_vs_sample": round(g[one]["tokens_per_s"] / sample, 3),
                    }
                )
        del served
        out = {"genlab": {}, "transformers": {}}
        if not args.no_transformers:
            with Server(hf_app(Path(tmp) / "hf"), 8932) as s:
                asyncio.run(level(s.url, "hf", prompts[:1], 4))
                for c in levels:
                    out["transformers"][str(c)] = asyncio.run(level(s.url, "hf", prompts[:c], args.max_tokens))
    by_ratio = sorted(rounds, key=lambda x: x[f"genlab_{top}_vs_genlab_{one}"])
    median = by_ratio[len(by_ratio) // 2]
    out["genlab"] = median["genlab"]
    g, h = out["genlab"], out["transformers"]
    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def med(key: str) -> float:
        return statistics.median(x[key] for x in rounds)

    ratios = {
        f"genlab_{top}_vs_genlab_{one}": med(f"genlab_{top}_vs_genlab_{one}"),
        f"genlab_{one}_vs_sample": med(f"genlab_{one}_vs_sample"),
    }
    if h:
        ratios[f"genlab_{top}_vs_transformers_{top}"] = round(g[top]["tokens_per_s"] / h[top]["tokens_per_s"], 2)
    result = {
        "benchmark": "serve",
        "model": "gpt2-small architecture, random weights, fp32, BPE vocab 50257 (tinyshakespeare, real text)",
        "max_tokens": args.max_tokens,
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},  # 1, 5, 15 min
        "torch": torch.__version__,
        "python": platform.python_version(),
        "sample_tokens_per_s": median["sample_tokens_per_s"],
        **out,
        "rounds": [
            {k: v if k != "genlab" else {c: x["tokens_per_s"] for c, x in v.items()} for k, v in rd.items()}
            for rd in rounds
        ],
        "ratios": ratios,
        "targets": {f"{top}_vs_{one}": 3.0, f"{top}_vs_transformers": 2.0, f"{one}_vs_sample": 0.9},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
