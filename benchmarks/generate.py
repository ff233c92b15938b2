"""Decoding benchmark: genlab with and without its KV cache against transformers' generate().

Prints one JSON object. Same random GPT-2 small weights (124M, built from a local config,
nothing downloaded) in both libraries, fp32 on CPU, greedy decoding of 256 new tokens after
a 32-token prompt at batch 1, all measured in this run; then genlab's tokens/s at batch 8
and the memory of its KV cache.

    python benchmarks/generate.py [--new-tokens 256] [--prompt-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from genlab.generation.decode import GenerationConfig, generate
    from genlab.models.convert.gpt2 import gpt_from_hf_state, hf_config_to_genlab

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    n, p = args.new_tokens, args.prompt_tokens

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()  # gpt2-small architecture, random weights
    cfg = hf_config_to_genlab(hf.config.to_dict())
    model = gpt_from_hf_state(hf.state_dict(), cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, p))

    def genlab_run(use_cache: bool, batch: int = 1):
        prompts = prompt.repeat(batch, 1).tolist()
        cfg_run = GenerationConfig(max_new_tokens=n, temperature=0, use_cache=use_cache)
        return generate(model, prompts, cfg_run)

    def hf_run():
        with torch.no_grad():
            return hf.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                use_cache=True,
                pad_token_id=hf.config.eos_token_id,
            )

    generate(model, prompt.tolist(), GenerationConfig(max_new_tokens=8, temperature=0))  # warm up
    hf_run()
    t_cache, ours = best_time(lambda: genlab_run(True), args.repeats)
    t_hf, theirs = best_time(hf_run, args.repeats)
    t_nocache, plain = best_time(lambda: genlab_run(False), 1)
    t_batch, _ = best_time(lambda: genlab_run(True, args.batch), 1)
    ours_tokens = ours[0][0].tokens
    cache = model.make_cache(1, p + n)
    result = {
        "model": "gpt2-small architecture, random weights, fp32",
        "threads": torch.get_num_threads(),
        "prompt_tokens": p,
        "new_tokens": n,
        "genlab_cache_tokens_per_s": round(n / t_cache, 1),
        "genlab_cache_ms_per_token": round(1000 * t_cache / n, 2),
        "genlab_no_cache_tokens_per_s": round(n / t_nocache, 1),
        "transformers_tokens_per_s": round(n / t_hf, 1),
        "transformers_ms_per_token": round(1000 * t_hf / n, 2),
        "speedup_cache_vs_no_cache": round(t_nocache / t_cache, 2),
        "speedup_vs_transformers": round(t_hf / t_cache, 2),
        f"genlab_batch{args.batch}_tokens_per_s": round(args.batch * n / t_batch, 1),
        "kv_cache_mb_batch1": round(cache.nbytes / 2**20, 1),
        f"kv_cache_mb_batch{args.batch}": round(args.batch * cache.nbytes / 2**20, 1),
        "same_greedy_tokens_as_transformers": ours_tokens == theirs[0, p:].tolist(),
        "same_tokens_cache_vs_no_cache": ours_tokens == plain[0][0].tokens,
        "transformers_version": __import__("transformers").__version__,
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
