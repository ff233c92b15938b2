"""Language-model recipe: text source -> tokenizer -> token stream -> model -> trainer.

The YAML has five sections: ``task: lm``, ``model`` (a preset and field overrides),
``data``, ``train`` (:class:`~genlab.training.engine.TrainConfig`) and ``sample``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from genlab.core.config import merge, to_dict
from genlab.data.sources import read_text
from genlab.data.text import RandomWindows, fixed_batches, split, token_stream
from genlab.generation.decode import GenerationConfig, generate
from genlab.models import build_model, family_of
from genlab.objectives.causal_lm import causal_lm_loss, mean_loss
from genlab.recipes import runner
from genlab.runs import model_config
from genlab.tokenizers import load_tokenizer, train_tokenizer
from genlab.tokenizers.chat import default_template, role_token_ids, save_template
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import unwrap


@dataclass
class DataConfig:
    source: str = "tinyshakespeare"  # a named source (genlab data list) or a text file / folder
    tokenizer: str = "char"  # char | bpe | chat-bpe (BPE + the chat role tokens; the run gets chat_template.json)
    vocab_size: int = 0  # BPE vocabulary size (0: default)
    val_fraction: float = 0.1  # the last 10% of the stream, in file order


@dataclass
class SampleConfig:
    prompt: str = "\n"
    max_new_tokens: int = 300
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    num_samples: int = 3
    seed: int = 1337
    at_eval: bool = False  # print a short sample at every evaluation


@dataclass
class LMRecipe:
    task: str = "lm"
    model: dict = field(default_factory=lambda: {"preset": "gpt-nano"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def _prepare(r: LMRecipe, s: runner.Session) -> runner.Setup:
    rt, run_dir, t = s.rt, s.run_dir, r.train
    # Tokenizer and token stream: trained once, saved beside the checkpoints.
    if s.resume:
        tok = load_tokenizer(run_dir)
    else:
        tok = train_tokenizer(r.data.tokenizer, read_text(r.data.source), r.data.vocab_size or None)
    tokens = token_stream(r.data.source, tok)
    train_tokens, val_tokens = split(tokens, r.data.val_fraction)
    cfg = model_config(r.model, vocab_size=tok.vocab_size)
    block = cfg.block_size
    s.start(merge(to_dict(r), {"model": {"family": family_of(cfg), **to_dict(cfg)}}), tok)
    if rt.is_main and not s.resume and role_token_ids(tok):  # a chat tokenizer: a chat run (genlab chat opens it)
        save_template(default_template(tok), run_dir)
    model = rt.wrap(build_model(cfg))
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    windows = lambda: RandomWindows(train_tokens, block, t.batch_size, seed=t.seed, rank=rt.rank,
                                    world_size=rt.world_size)  # fmt: skip
    data = windows()
    # The same evaluation windows whatever the number of processes; each evaluates its shard.
    eval_set = fixed_batches(
        val_tokens, block, t.batch_size, t.eval_batches, seed=t.seed + 1, rank=rt.rank, world_size=rt.world_size
    )

    def evaluate(models):
        return {"val_loss": mean_loss(models["model"], eval_set, rt.device)}

    def on_eval(step, metrics):
        if r.sample.at_eval:
            text = sample_texts(unwrap(model), tok, r.sample, block, num_samples=1, max_new_tokens=120)[0]
            s.log(f"--- sample at step {step} ---\n{text}\n---")

    loss = lambda ms, batch: causal_lm_loss(ms["model"], batch)
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=run_dir,
                      evaluate=evaluate, on_eval=on_eval)  # fmt: skip
    per_step = t.batch_size * block * t.grad_accum

    def finish(trainer: Trainer) -> dict:
        if r.sample.num_samples > 0:
            for i, text in enumerate(sample_texts(unwrap(model), tok, r.sample, block)):
                s.log(f"--- sample {i + 1} ---\n{text}")
        return {"best_val_loss": trainer.best}

    return runner.Setup(
        trainer, data, sum(p.numel() for p in model.parameters()),
        f"{len(train_tokens):,} train / {len(val_tokens):,} val tokens | vocab {tok.vocab_size}",
        runner.flops_per_item(loss, {"model": model}, next(windows()), rt.device, t.batch_size * block),
        lambda steps: steps * per_step, finish,
    )  # fmt: skip


train = runner.entry_point("lm", LMRecipe, _prepare)


def sample_texts(model, tok, s: SampleConfig, block_size: int, **override) -> list[str]:
    """Sample ``num_samples`` continuations of ``s.prompt``; returns prompt + continuation."""
    s = dataclasses.replace(s, **override)
    cfg = GenerationConfig(
        max_new_tokens=s.max_new_tokens,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        num_return_sequences=s.num_samples,
        seed=s.seed,
        context="window",
        eos_id=tok.eos_id,
        bos_id=tok.eos_id,
    )
    gens = generate(model, [tok.encode(s.prompt)], cfg, decode=tok.decode)[0]
    return [s.prompt + g.text for g in gens]


__all__ = ["LMRecipe", "sample_texts", "train"]
