"""Encoder-decoder benchmark: genlab's Seq2Seq against transformers' T5ForConditionalGeneration.

Prints one JSON object. A t5-small-shaped model (60.5M parameters, random weights built from
a local config, nothing downloaded), the same weights in both libraries, fp32 on CPU, 2 threads:

- training: tokens/s (source + target tokens) of forward + backward + AdamW step on the same
  batch, genlab (SDPA with T5's bias folded into one additive mask, fused QKV) against
  transformers (its default attention), each with the same fused AdamW; the first step's
  losses must agree;
- generation: beam search with 4 beams (transformers' default early_stopping=False) on a
  batch of sources of different lengths, generated tokens/s, against ``generate()``; the
  token ids must be identical.

    python benchmarks/seq2seq.py [--batch 8] [--src 64] [--tgt 32] [--steps 3]
                                 [--gen-batch 4] [--new-tokens 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def train_steps(steps: dict, n: int) -> tuple[dict, dict]:
    """Seconds per step (best of ``n``, after one warm-up step) and the first loss of each
    stepper; the steppers alternate, so that both see the same machine load."""
    first = {k: step() for k, step in steps.items()}
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(n):
        for k, step in steps.items():
            t0 = time.perf_counter()
            step()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best, first


def main() -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    from genlab.generation.decode import GenerationConfig, beam_search, right_pad
    from genlab.models.convert.seq2seq import hf_config_to_genlab, seq2seq_from_hf_state

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--src", type=int, default=64)
    ap.add_argument("--tgt", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--gen-batch", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    torch.manual_seed(0)
    hf_cfg = T5Config(dropout_rate=0.0, decoder_start_token_id=0)  # t5-small's shape
    hf = T5ForConditionalGeneration(hf_cfg)
    cfg = hf_config_to_genlab(hf.config.to_dict())
    ours = seq2seq_from_hf_state(hf.state_dict(), cfg)
    V = cfg.vocab_size

    # --- training: the same batch, the same weights, the same optimizer ---------------------
    g = torch.Generator().manual_seed(1)
    src = torch.randint(2, V, (args.batch, args.src), generator=g)
    mask = torch.ones_like(src)
    mask[args.batch // 2 :, args.src * 3 // 4 :] = 0  # half the rows padded
    labels = torch.randint(2, V, (args.batch, args.tgt), generator=g)
    dec_in = ours.shift_right(labels)

    def stepper(model, forward):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

        def step() -> float:
            logits = forward()
            loss = F.cross_entropy(logits.float().view(-1, V), labels.view(-1))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()

        return step

    ours_train = seq2seq_from_hf_state(hf.state_dict(), cfg)  # copies: generation uses the untrained weights
    hf_train = T5ForConditionalGeneration(hf_cfg)
    hf_train.load_state_dict(hf.state_dict())
    genlab_step = stepper(ours_train, lambda: ours_train(src, mask, dec_in).logits)
    hf_step = stepper(hf_train, lambda: hf_train(input_ids=src, attention_mask=mask, decoder_input_ids=dec_in).logits)
    times, losses = train_steps({"hf": hf_step, "genlab": genlab_step}, args.steps)
    t_hf, t_ours, loss_hf, loss_ours = times["hf"], times["genlab"], losses["hf"], losses["genlab"]
    assert abs(loss_hf - loss_ours) < 1e-4, (loss_hf, loss_ours)
    train_tokens = args.batch * (args.src + args.tgt)

    # --- beam-4 generation -------------------------------------------------------------------
    ours.eval(), hf.eval()
    lengths = [args.src - 7 * i for i in range(args.gen_batch)]
    sources = [torch.randint(2, V, (n,), generator=g).tolist() for n in lengths]
    gcfg = GenerationConfig(max_new_tokens=args.new_tokens, num_beams=4, eos_id=cfg.eos_id)
    ids, src_mask = right_pad(sources, cfg.pad_id)
    src_mask = torch.ones_like(ids) if src_mask is None else src_mask

    def hf_gen():
        with torch.no_grad():
            return hf.generate(
                input_ids=ids, attention_mask=src_mask, max_new_tokens=args.new_tokens, num_beams=4,
                do_sample=False, early_stopping=False,
            )  # fmt: skip

    def ours_gen():
        return beam_search(ours, sources, gcfg)

    best = {"hf": float("inf"), "genlab": float("inf")}
    out_hf = out_ours = None
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        t0 = time.perf_counter()
        out_hf = hf_gen()
        best["hf"] = min(best["hf"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_ours = ours_gen()
        best["genlab"] = min(best["genlab"], time.perf_counter() - t0)
    theirs = []
    for row in out_hf[:, 1:].tolist():
        theirs.append(row[: row.index(cfg.eos_id) + 1] if cfg.eos_id in row else row)
    mine = [gens[0].tokens for gens in out_ours]
    assert mine == theirs, "beam-4 outputs differ from transformers generate()"
    gen_tokens = sum(len(t) for t in mine)

    print(
        json.dumps(
            {
                "benchmark": "seq2seq",
                "model": "t5-small shape (60.5M parameters, random weights), fp32",
                "cpu": cpu_name(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "train": {
                    "batch": args.batch,
                    "src_tokens": args.src,
                    "tgt_tokens": args.tgt,
                    "loss_first_step": {"genlab": round(loss_ours, 6), "transformers": round(loss_hf, 6)},
                    "tokens_per_s": {
                        "genlab": round(train_tokens / t_ours, 1),
                        "transformers": round(train_tokens / t_hf, 1),
                    },
                    "speedup": round(t_hf / t_ours, 3),
                    "hf_attention": hf.config._attn_implementation,
                },
                "beam4": {
                    "sources": lengths,
                    "new_tokens": args.new_tokens,
                    "generated_tokens": gen_tokens,
                    "identical_ids": True,
                    "tokens_per_s": {
                        "genlab": round(gen_tokens / best["genlab"], 1),
                        "transformers": round(gen_tokens / best["hf"], 1),
                    },
                    "speedup": round(best["hf"] / best["genlab"], 3),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
