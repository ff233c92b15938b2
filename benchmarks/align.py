"""Alignment benchmark: optimiser steps per second of genlab's DPO and GRPO against TRL's
DPOTrainer and GRPOTrainer on the same tiny GPT-2-shaped model (the same weights in both), the
same data and the same batch, single-threaded on the CPU, fp32.

DPO: B preference pairs per step (prompt + chosen / rejected answers, templated element facts).
GRPO: P prompts x G sampled completions per step (max C new tokens, temperature 1), a verifiable
reward (the answer starts the completion), KL weight beta to the frozen reference, one
optimisation pass per rollout. genlab samples with its own decoding engine (KV cache), TRL with
transformers' generate. Timed: the training loop only, from the first step's start (set-up and
TRL's dataset tokenisation excluded), the same number of steps.

Prints one JSON object with steps/s of each and the ratios genlab / TRL.

    python benchmarks/align.py [--dpo-steps 30] [--grpo-steps 12] [--rounds 3] [--n-layer 2] [--n-embd 64]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

from genlab.alignment.data import collate_pairs
from genlab.alignment.dpo import dpo_step
from genlab.alignment.grpo import grpo_step
from genlab.data.batches import ShuffledBatches
from genlab.models.convert.gpt2 import genlab_config_to_hf, genlab_state_to_hf
from genlab.models.gpt import GPT, GPTConfig
from genlab.recipes.chat import ChatRecipe, Rollouts
from genlab.tokenizers.chat import ChatTemplate
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime

CHARS = [chr(i) for i in range(32, 127)]
PAD, EOS = len(CHARS), len(CHARS) + 1
VOCAB = len(CHARS) + 2
ELEMENTS = [("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
            ("sodium", "Na"), ("iron", "Fe"), ("copper", "Cu"), ("silver", "Ag"), ("gold", "Au"),
            ("lead", "Pb"), ("tin", "Sn"), ("zinc", "Zn"), ("neon", "Ne"), ("argon", "Ar"),
            ("sulfur", "S")]  # fmt: skip


class CharTok:
    """ASCII characters 32..126 as ids 0..94, then <pad>, <eos>: the same ids as the HF tokenizer below."""

    eos_id = EOS
    kind = "char"
    vocab_size = VOCAB

    def encode(self, text):
        return [ord(c) - 32 for c in text]

    def decode(self, ids):
        return "".join(CHARS[i] for i in ids if i < len(CHARS))


def hf_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(CHARS)} | {"<pad>": PAD, "<eos>": EOS}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>")


def hf_model(model: GPT):
    from transformers import GPT2Config, GPT2LMHeadModel

    skip = ("architectures", "model_type", "dtype", "pad_token_id", "bos_token_id", "eos_token_id")
    fields = {k: v for k, v in genlab_config_to_hf(model.config).items() if k not in skip}
    hf = GPT2LMHeadModel(GPT2Config(**fields, pad_token_id=PAD, bos_token_id=EOS, eos_token_id=EOS))
    hf.load_state_dict(genlab_state_to_hf(model.state_dict(), model.config), strict=False)
    return hf


def timed_train(trainer) -> float:
    """Seconds of a transformers Trainer's training loop, from its first step's start (set-up excluded)."""
    from transformers import TrainerCallback

    marks = {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            marks.setdefault("start", time.perf_counter())

    trainer.add_callback(Clock())
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its metrics: stdout is the one JSON
        trainer.train()
    return time.perf_counter() - marks["start"]


def question(name):
    return f"Q: symbol of {name}? A:"


def pairs_rows():
    return [{"prompt": question(n), "chosen": f" {s}", "rejected": " I don't know"} for n, s in ELEMENTS]


def train_config(steps, batch, lr):
    return TrainConfig(max_steps=steps, batch_size=batch, lr=lr, min_lr=lr, warmup_steps=0, schedule="cosine",
                       weight_decay=0.0, grad_clip=1.0, eval_interval=0, log_interval=10**6, progress=False,
                       tensorboard=False, device="cpu", dtype="fp32")  # fmt: skip


def genlab_dpo(model, steps, batch, beta):
    tok, rt = CharTok(), Runtime.from_env("cpu", "fp32")
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    eos = [EOS]
    encoded = [(tok.encode(r["prompt"]), tok.encode(r["chosen"]) + eos, tok.encode(r["rejected"]) + eos)
               for r in pairs_rows()]  # fmt: skip
    data = ShuffledBatches(len(encoded), batch, lambda idx: collate_pairs([encoded[i] for i in idx], 64, PAD))
    cfg = train_config(steps, batch, 1e-5)
    opt = adamw(model, cfg.lr, 0.0, (0.9, 0.999))
    step = lambda ms, b: dpo_step(ms["model"], reference, b, beta)
    trainer = Trainer({"model": model}, {"model": opt}, [Phase(step)], rt, cfg)
    trainer.fit(data)
    return steps / trainer.elapsed


def trl_dpo(model, steps, batch, beta, out):
    import datasets
    import trl

    args = trl.DPOConfig(output_dir=str(out), report_to=[], use_cpu=True, bf16=False, per_device_train_batch_size=batch,
                         max_steps=steps, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
                         weight_decay=0.0, max_grad_norm=1.0, beta=beta, loss_type=["sigmoid"], logging_steps=10**6,
                         save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=0)  # fmt: skip
    data = datasets.Dataset.from_list(pairs_rows())
    trainer = trl.DPOTrainer(model=hf_model(model), ref_model=hf_model(model).eval(), args=args, train_dataset=data,
                             processing_class=hf_tokenizer())  # fmt: skip
    return steps / timed_train(trainer)


def genlab_grpo(model, steps, prompts, group, new_tokens, beta):
    tok = CharTok()
    recipe = ChatRecipe(task="chat-grpo", beta=beta, train=train_config(steps, prompts, 1e-5))
    recipe.rollout.group_size, recipe.rollout.max_new_tokens = group, new_tokens
    session = SimpleNamespace(rt=SimpleNamespace(rank=0, world_size=1))
    qs = [tok.encode(question(n)) for n, _ in ELEMENTS]
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    template = ChatTemplate()  # no markup, no stop: raw completions, as TRL's prompts and reward see them
    data = Rollouts(qs, [s for _, s in ELEMENTS], model, reference, tok, template, recipe, session)
    opt = adamw(model, 1e-5, 0.0, (0.9, 0.999))
    step = lambda ms, b: grpo_step(ms["model"], b, beta, 0.2)
    trainer = Trainer({"model": model}, {"model": opt}, [Phase(step)], Runtime.from_env("cpu", "fp32"), recipe.train)
    trainer.fit(data)
    return steps / trainer.elapsed


def trl_grpo(model, steps, prompts, group, new_tokens, beta, out):
    import datasets
    import trl

    # A local model directory: TRL loads its frozen reference from the policy's path.
    path = Path(out) / "model"
    hf_model(model).save_pretrained(path)
    tok = hf_tokenizer()
    tok.save_pretrained(path)

    def reward(completions, answer, **_):
        return [1.0 if c.strip().startswith(a) else -1.0 for c, a in zip(completions, answer)]

    rows = [{"prompt": question(n), "answer": s} for n, s in ELEMENTS]
    args = trl.GRPOConfig(output_dir=str(out), report_to=[], use_cpu=True, bf16=False,
                          per_device_train_batch_size=prompts * group, num_generations=group, steps_per_generation=1,
                          max_completion_length=new_tokens, temperature=1.0, beta=beta, epsilon=0.2,
                          loss_type="grpo", max_steps=steps, learning_rate=1e-5, lr_scheduler_type="constant",
                          warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, logging_steps=10**6,
                          save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=0)  # fmt: skip
    trainer = trl.GRPOTrainer(model=str(path), reward_funcs=[reward], args=args,
                              train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)  # fmt: skip
    return steps / timed_train(trainer)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dpo-steps", type=int, default=30)
    ap.add_argument("--grpo-steps", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=4, help="DPO pairs per step")
    ap.add_argument("--prompts", type=int, default=2, help="GRPO prompts per step")
    ap.add_argument("--group", type=int, default=4, help="GRPO completions per prompt")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; each library's best is kept")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=a.n_layer, n_head=2, n_embd=a.n_embd,
                         mlp="gelu_tanh"))  # fmt: skip
    # Alternate the two libraries for --rounds rounds and keep each one's best: on a shared machine the load
    # changes from second to second, and interleaving gives both the same chances.
    dpo_g = dpo_t = grpo_g = grpo_t = 0.0
    g = (a.prompts, a.group, a.new_tokens, 0.04)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            dpo_g = max(dpo_g, genlab_dpo(copy.deepcopy(base), a.dpo_steps, a.pairs, 0.1))
            dpo_t = max(dpo_t, trl_dpo(copy.deepcopy(base), a.dpo_steps, a.pairs, 0.1, Path(tmp) / f"dpo{r}"))
            grpo_g = max(grpo_g, genlab_grpo(copy.deepcopy(base), a.grpo_steps, *g))
            grpo_t = max(grpo_t, trl_grpo(copy.deepcopy(base), a.grpo_steps, *g, Path(tmp) / f"grpo{r}"))
    print(json.dumps({
        "cpu": cpu_name(), "threads": 1, "rounds": a.rounds, "statistic": "best of rounds", "dtype": "fp32",
        "data": "templated (element symbols)",
        "model": {"n_layer": a.n_layer, "n_embd": a.n_embd, "vocab": VOCAB,
                  "parameters": sum(p.numel() for p in base.parameters())},
        "dpo": {"steps": a.dpo_steps, "pairs_per_step": a.pairs, "genlab_steps_per_s": dpo_g,
                "trl_steps_per_s": dpo_t, "ratio": dpo_g / dpo_t},
        "grpo": {"steps": a.grpo_steps, "prompts_per_step": a.prompts, "group": a.group, "new_tokens": a.new_tokens,
                 "genlab_steps_per_s": grpo_g, "trl_steps_per_s": grpo_t, "ratio": grpo_g / grpo_t},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
