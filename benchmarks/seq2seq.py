"""Encoder-decoder benchmark: genlab's Seq2Seq against transformers' T5ForConditionalGeneration.

Prints one JSON object. A t5-small-shaped model (60.5M parameters, random weights built from
a local config, nothing downloaded), the same weights in both libraries, fp32 on CPU, 2 threads:

- training: tokens/s (source + target tokens) of forward + backward + AdamW step on the same
  batch (half its rows padded by a quarter), genlab (the encoder on the real tokens only, SDPA
  with T5's bias folded into one additive mask, fused QKV, one sparse-gradient lookup of the
  tied table) against transformers (its default attention), each with the same fused AdamW;
  the first step's losses must agree;
- generation: beam search with 4 beams (transformers' default early_stopping=False) on a
  batch of sources of different lengths, generated tokens/s, against ``generate()``; the
  token ids must be identical.

The machine may be shared: the two sides alternate step by step (hf then genlab, then genlab then
hf, ...) for ``--rounds`` rounds, and the speedup is the median of the per-round ratios (each
round's two timings saw nearly the same load); tokens/s are each side's median. ``--padded-reference``
adds genlab with ``pack_padding=False`` (every source position through every layer) to the
rounds, to show what skipping the padding is worth. Importing genlab turns on huge pages for large
CPU tensors (``THP_MEM_ALLOC_ENABLE``), which then holds for both libraries in this one process;
``THP_MEM_ALLOC_ENABLE=0`` runs both without.

    python benchmarks/seq2seq.py [--batch 8] [--src 64] [--tgt 32] [--rounds 7]
                                 [--gen-batch 4] [--new-tokens 32] [--gen-rounds 3]
                                 [--padded-reference]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import genlab  # noqa: F401  (before any tensor exists: its huge-page setting then holds for both libraries)

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


def interleaved(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each call, round by round; within a round the callers alternate, and the order
    flips every round, so that both sides see the same machine load."""
    times = {k: [] for k in fns}
    for r in range(rounds):
        for k in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def ratios(times: dict[str, list[float]], ours: str = "genlab") -> dict:
    """The median of the per-round ratios hf / ours, with their spread."""
    r = sorted(h / o for h, o in zip(times["hf"], times[ours]))
    return {"median": round(statistics.median(r), 3), "min": round(r[0], 3), "max": round(r[-1], 3)}


def per_s(n: int, seconds: list[float]) -> float:
    return round(n / statistics.median(seconds), 1)


def main() -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    from genlab.generation.decode import GenerationConfig, beam_search, right_pad
    from genlab.models.convert.seq2seq import hf_config_to_genlab, seq2seq_from_hf_state

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--src", type=int, default=64)
    ap.add_argument("--tgt", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved training rounds (one step per side each)")
    ap.add_argument("--gen-batch", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--gen-rounds", type=int, default=3, help="interleaved beam-search rounds")
    ap.add_argument("--padded-reference", action="store_true", help="also time genlab with pack_padding=False")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
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
    steps = {"hf": hf_step, "genlab": genlab_step}
    if args.padded_reference:
        padded = seq2seq_from_hf_state(hf.state_dict(), dataclasses.replace(cfg, pack_padding=False))
        steps["genlab_padded"] = stepper(padded, lambda: padded(src, mask, dec_in).logits)
    losses = {k: step() for k, step in steps.items()}  # the first step warms up and checks
    for loss in losses.values():
        assert abs(loss - losses["hf"]) < 1e-4, losses
    times = interleaved(steps, args.rounds)
    train_tokens = args.batch * (args.src + args.tgt)
    train = {
        "batch": args.batch,
        "src_tokens": args.src,
        "tgt_tokens": args.tgt,
        "padding": round(1 - mask.float().mean().item(), 3),
        "rounds": args.rounds,
        "loss_first_step": {"genlab": round(losses["genlab"], 6), "transformers": round(losses["hf"], 6)},
        "tokens_per_s": {
            "genlab": per_s(train_tokens, times["genlab"]),
            "transformers": per_s(train_tokens, times["hf"]),
        },
        "speedup": ratios(times),
        "hf_attention": hf.config._attn_implementation,
    }
    if args.padded_reference:
        train["tokens_per_s"]["genlab_padded"] = per_s(train_tokens, times["genlab_padded"])
        train["speedup_padded"] = ratios(times, "genlab_padded")

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

    out = {"hf": hf_gen(), "genlab": ours_gen()}  # warm-up; these outputs are checked below
    gen_times = interleaved({"hf": lambda: out.update(hf=hf_gen()), "genlab": lambda: out.update(genlab=ours_gen())},
                            args.gen_rounds)  # fmt: skip
    out_hf, out_ours = out["hf"], out["genlab"]
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
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE"),
                "train": train,
                "beam4": {
                    "sources": lengths,
                    "new_tokens": args.new_tokens,
                    "generated_tokens": gen_tokens,
                    "identical_ids": True,
                    "rounds": args.gen_rounds,
                    "tokens_per_s": {
                        "genlab": per_s(gen_tokens, gen_times["genlab"]),
                        "transformers": per_s(gen_tokens, gen_times["hf"]),
                    },
                    "speedup": ratios(gen_times),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
