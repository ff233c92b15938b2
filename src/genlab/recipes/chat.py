"""The alignment stages as recipes: ``chat-sft``, ``chat-reward``, ``chat-dpo``, ``chat-grpo``, ``chat-ppo``.

Every stage starts from a GPT run (``init=RUN``: a pretraining run, or the previous stage) and a
JSONL file (see :mod:`genlab.alignment.data`), writes a run directory like every recipe (the
init run's tokenizer and model section, so :func:`genlab.runs.load_run` reads it back) and
resumes exactly (``--resume``): data order and rollout sampling seeds are part of the checkpoint.
Every stage renders its data through the init run's chat template (``template=`` names another)
and saves it as the run's ``chat_template.json``, so ``genlab chat`` and the server open the run.

    genlab train chat/sft init=runs/pretrain data.path=conversations.jsonl
    genlab train chat/reward init=runs/sft data.path=preferences.jsonl
    genlab train chat/dpo init=runs/sft data.path=preferences.jsonl
    genlab train chat/grpo init=runs/sft data.path=questions.jsonl          (verifiable rewards)
    genlab train chat/ppo init=runs/sft reward=runs/reward data.path=questions.jsonl
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from genlab.alignment import data as D
from genlab.alignment.dpo import dpo_step
from genlab.alignment.grpo import group_advantages, grpo_step
from genlab.alignment.logprobs import token_logprobs
from genlab.alignment.ppo import ppo_policy_step, ppo_targets, ppo_value_step, token_values
from genlab.alignment.reward import pairwise_accuracy, reward_step
from genlab.alignment.rollouts import check_same_tokenizer, rollout, verifiable_reward
from genlab.alignment.sft import collate, pack, sft_loss
from genlab.core.config import merge, to_dict
from genlab.core.errors import ConfigError, DataError
from genlab.data.batches import ShuffledBatches
from genlab.generation.decode import GenerationConfig
from genlab.models.heads import HeadConfig, ScoreModel
from genlab.recipes import runner
from genlab.runs import load_run
from genlab.tokenizers.chat import TEMPLATE_FILE, ChatTemplate, end_of_turn_id, resolve_template, save_template
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import unwrap


@dataclass
class ChatData:
    path: str = ""  # the JSONL file of the stage
    val_fraction: float = 0.1  # the last 10% of the examples, in file order
    pack: bool = False  # SFT: concatenate examples into full context rows


@dataclass
class RolloutConfig:
    group_size: int = 4  # completions per prompt (GRPO's group G; PPO's samples per prompt)
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    abstain_reward: float = 0.0  # verifiable reward of "I don't know" (right: 1, wrong: -1)


@dataclass
class ChatRecipe:
    task: str = "chat-sft"
    init: str = ""  # a GPT run directory the stage starts from
    checkpoint: str = "best"  # which checkpoint of init
    template: str = ""  # '' the init run's (else role-tokens/plain by its tokenizer) | role-tokens | plain | FILE
    data: ChatData = field(default_factory=ChatData)
    train: TrainConfig = field(default_factory=TrainConfig)
    beta: float = 0.1  # DPO: beta; GRPO: KL weight; PPO: per-token KL penalty
    label_smoothing: float = 0.0  # DPO
    clip: float = 0.2  # GRPO / PPO ratio clip
    loss_type: str = "grpo"  # GRPO: grpo | bnpo
    reward: str = ""  # PPO: a reward run ('' = the verifiable reward of each prompt's answer)
    gamma: float = 1.0  # PPO GAE
    lam: float = 0.95
    value_coef: float = 0.5
    value_clip: float = 0.2
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    # Written by the stage into the run's config.yaml (so load_run rebuilds its model), ignored on input:
    model: dict = field(default_factory=dict)  # the init run's model section
    head: dict = field(default_factory=dict)  # a reward run's scalar head


STAGES = ("chat-sft", "chat-reward", "chat-dpo", "chat-grpo", "chat-ppo")


def _check(r: ChatRecipe) -> None:
    if r.task not in STAGES:
        raise ConfigError(f"task must be one of {list(STAGES)}, got '{r.task}'")
    if not r.init:
        raise ConfigError(f"{r.task} starts from a GPT run: give init=RUN_DIR")
    if not r.data.path:
        raise ConfigError(f"{r.task} needs its JSONL file: give data.path=FILE")
    if r.task == "chat-grpo" and r.rollout.group_size < 2:
        raise ConfigError("GRPO compares completions within a group: rollout.group_size must be at least 2")


def _split(rows: list, fraction: float, what: str) -> tuple[list, list]:
    n_val = int(round(len(rows) * fraction))
    if len(rows) - n_val < 1:
        raise DataError(f"{what}: {len(rows)} examples leave none for training at val_fraction={fraction}")
    return rows[: len(rows) - n_val], rows[len(rows) - n_val :]


def _prepare(r: ChatRecipe, s: runner.Session) -> runner.Setup:
    policy, tok, init_config = load_run(r.init, r.checkpoint)
    if isinstance(policy, ScoreModel) or init_config.get("model", {}).get("family") != "gpt":
        raise ConfigError(f"{r.init} is not a GPT language-model run: alignment stages start from one")
    block = policy.config.block_size
    pad = tok.eos_id if tok.eos_id is not None else 0
    config = {k: v for k, v in to_dict(r).items() if k != "head"}  # only a reward run has a head
    config = merge(config, {"model": init_config["model"]})
    own = s.run_dir / TEMPLATE_FILE
    template, where = resolve_template(str(own) if s.resume and own.is_file() else r.template, r.init, tok)
    s.log(f"{r.task}: chat template: {where}")
    build = {"chat-sft": _sft, "chat-reward": _reward, "chat-dpo": _dpo, "chat-grpo": _grpo, "chat-ppo": _ppo}
    return build[r.task](r, s, template, policy.train(), tok, block, pad, config)


def _start(s: runner.Session, template: ChatTemplate, config: dict, tok) -> None:
    """Start the run (config.yaml, tokenizer) and save the stage's chat template beside them."""
    s.start(config, tok)
    if s.rt.is_main:
        save_template(template, s.run_dir)


def _batches(n: int, t: TrainConfig, s: runner.Session, collate_fn) -> ShuffledBatches:
    return ShuffledBatches(n, t.batch_size, collate_fn, seed=t.seed, rank=s.rt.rank, world_size=s.rt.world_size)


def _fixed(items: list, t: TrainConfig, collate_fn) -> list:
    """Evaluation batches in file order (at most eval_batches)."""
    batches = [collate_fn(items[i : i + t.batch_size]) for i in range(0, len(items), t.batch_size)]
    return batches[: max(1, t.eval_batches)]


def _setup(s, trainer, data, models, describe, sample_batch, finish=None, loss=None) -> runner.Setup:
    """``loss`` (with ``sample_batch``) measures FLOPs per token; rollout stages pass none (their
    sampling is most of the work and is not a loss), so their FLOPs and MFU are NaN."""
    params = sum(p.numel() for m in models for p in m.parameters())
    items = int(sample_batch[0].numel())
    flops = (
        runner.flops_per_item(loss, trainer.models, sample_batch, s.rt.device, items)
        if loss is not None
        else lambda: float("nan")
    )
    return runner.Setup(
        trainer, data, params, describe, flops, lambda steps: steps * items * s.train.grad_accum, finish
    )


# --- SFT ------------------------------------------------------------------------------------


def _sft(r, s, template, policy, tok, block, pad, config):
    t, rt = r.train, s.rt
    examples = D.conversation_examples(r.data.path, template, tok)
    train_ex, val_ex = _split(examples, r.data.val_fraction, r.data.path)
    if r.data.pack:
        train_ex = pack(train_ex, block)
    _start(s, template, config, tok)
    model = rt.wrap(policy)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    make = lambda ex: collate(ex, block, pad)
    data = _batches(len(train_ex), t, s, lambda idx: make([train_ex[i] for i in idx]))
    val = _fixed(val_ex, t, make) if val_ex else []

    def evaluate(models):
        return {"val_loss": _mean([float(_first(sft_loss(models["model"], b))) for b in val])} if val else {}

    loss = lambda ms, b: sft_loss(ms["model"], b)
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate)  # fmt: skip
    return _setup(s, trainer, data, [model], f"{len(train_ex)} train / {len(val_ex)} val conversations",
                  make(train_ex[: t.batch_size]), lambda tr: {"best_val_loss": tr.best}, loss)  # fmt: skip


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


# --- reward model ---------------------------------------------------------------------------


def _reward(r, s, template, policy, tok, block, pad, config):
    t, rt = r.train, s.rt
    pairs = D.encode_pairs(template, tok, D.read_jsonl(r.data.path, D.PREFERENCE_KEYS))
    train_p, val_p = _split(pairs, r.data.val_fraction, r.data.path)
    head = HeadConfig()
    t.best_metric, t.best_mode = "val_accuracy", "max"
    best = {"best_metric": t.best_metric, "best_mode": "max"}
    _start(s, template, merge(config, {"head": to_dict(head), "train": best}), tok)
    model = rt.wrap(ScoreModel(policy, head))
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    make = lambda ps: collate_pairs_scores(ps, block, pad)
    data = _batches(len(train_p), t, s, lambda idx: make([train_p[i] for i in idx]))
    val = _fixed(val_p, t, make) if val_p else []

    def evaluate(models):
        return {"val_accuracy": pairwise_accuracy(models["model"], val)} if val else {}

    loss = lambda ms, b: reward_step(ms["model"], b)
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(loss)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate)  # fmt: skip
    return _setup(s, trainer, data, [model], f"{len(train_p)} train / {len(val_p)} val pairs",
                  make(train_p[: t.batch_size]), lambda tr: {"best_val_accuracy": tr.best}, loss)  # fmt: skip


def collate_pairs_scores(pairs, block, pad):
    ids, attention, _ = D.collate_pairs(pairs, block, pad)
    return ids, attention


# --- DPO ------------------------------------------------------------------------------------


def _dpo(r, s, template, policy, tok, block, pad, config):
    t, rt = r.train, s.rt
    pairs = D.encode_pairs(template, tok, D.read_jsonl(r.data.path, D.PREFERENCE_KEYS))
    train_p, val_p = _split(pairs, r.data.val_fraction, r.data.path)
    _start(s, template, config, tok)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    model = rt.wrap(policy)
    reference.to(rt.device)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    make = lambda ps: D.collate_pairs(ps, block, pad)
    data = _batches(len(train_p), t, s, lambda idx: make([train_p[i] for i in idx]))
    val = [tuple(x.to(rt.device) for x in b) for b in (_fixed(val_p, t, make) if val_p else [])]
    step = lambda ms, b: dpo_step(ms["model"], reference, b, r.beta, r.label_smoothing)

    def evaluate(models):
        rows = [dpo_step(models["model"], reference, b, r.beta, r.label_smoothing) for b in val]
        if not rows:
            return {}
        accuracy = _mean([float(x[1]["reward_accuracy"]) for x in rows])
        return {"val_loss": _mean([float(x[0]) for x in rows]), "val_reward_accuracy": accuracy}

    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(step)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate)  # fmt: skip
    return _setup(s, trainer, data, [model], f"{len(train_p)} train / {len(val_p)} val pairs",
                  make(train_p[: t.batch_size]), lambda tr: {"best_val_loss": tr.best}, step)  # fmt: skip


# --- rollouts for GRPO and PPO --------------------------------------------------------------


class Rollouts:
    """Endless rollout batches of the *current* policy: B prompts x group_size completions each,
    scored, with the sampling policy's and the reference's log-probs. Resumable: the prompt order
    and the number of draws (each draw samples with seed + draws) are its state."""

    def __init__(self, prompts, answers, policy, reference, tok, template, r: ChatRecipe, s, score=None, value=None):
        self.prompts, self.answers, self.template = prompts, answers, template
        self.policy, self.reference, self.tok, self.r = policy, reference, tok, r
        self.score, self.value = score, value
        self.order = _batches(len(prompts), r.train, s, lambda idx: [int(i) for i in idx])
        self.draws = 0

    def __iter__(self):
        return self

    def generation(self, seed: int) -> GenerationConfig:
        ro = self.r.rollout
        return GenerationConfig(max_new_tokens=ro.max_new_tokens, temperature=ro.temperature, top_k=ro.top_k,
                                top_p=ro.top_p, num_return_sequences=ro.group_size, stop=self.template.stop,
                                eos_id=end_of_turn_id(self.template, self.tok), bos_id=self.tok.eos_id, seed=seed,
                                context="window")  # fmt: skip

    def __next__(self):
        idx = next(self.order)
        self.draws += 1
        policy = unwrap(self.policy)
        pad = self.tok.eos_id if self.tok.eos_id is not None else 0
        out = rollout(policy, [self.prompts[i] for i in idx], self.generation(self.r.train.seed + self.draws),
                      self.tok.decode, pad)  # fmt: skip
        answers = [self.answers[idx[p]] for p in out.prompt_index]
        with torch.no_grad():  # GRPO makes one pass per rollout: its sampling log-probs are the current ones
            old = token_logprobs(policy, out.ids, out.attention_mask) if self.value is not None else None
            ref = token_logprobs(self.reference, out.ids, out.attention_mask)
            if self.score is not None:
                scores = self.score.score(out.ids, out.attention_mask).float()
            else:
                ro = self.r.rollout
                texts = [self.template.clean(x) for x in out.texts]
                scores = torch.tensor([verifiable_reward(x, a, ro.abstain_reward) for x, a in zip(texts, answers)])
        scores = scores.to(ref.device)
        self.last_reward = float(scores.mean())
        if self.value is None:  # GRPO
            adv = group_advantages(scores, self.r.rollout.group_size)
            return out.ids, out.attention_mask, out.completion_mask, old, ref, adv
        mask = out.completion_mask[:, 1:]
        with torch.no_grad():
            values = token_values(unwrap(self.value), out.ids, out.attention_mask)
        adv, returns, _ = ppo_targets(scores, old, ref, values, mask, self.r.beta, self.r.gamma, self.r.lam)
        return out.ids, out.attention_mask, out.completion_mask, old, adv, values, returns

    def state_dict(self) -> dict:
        return {"order": self.order.state_dict(), "draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state["order"])
        self.draws = int(state["draws"])


def _verifiable(r, tok, template):
    """(prompt ids, question rows) of the training and the validation questions."""
    rows = D.read_jsonl(r.data.path, D.VERIFIABLE_KEYS)
    train_rows, val_rows = _split(rows, r.data.val_fraction, r.data.path)
    enc = lambda rs: ([D.encode_prompt(template, tok, x) for x in rs], rs)
    return enc(train_rows), enc(val_rows)


def _greedy_eval(policy, tok, template, prompts, answers, r):
    """Mean verifiable reward and accuracy of greedy answers to held-out prompts."""
    if not prompts:
        return {}
    cfg = GenerationConfig(max_new_tokens=r.rollout.max_new_tokens, temperature=0.0, stop=template.stop,
                           eos_id=end_of_turn_id(template, tok), bos_id=tok.eos_id, context="window")  # fmt: skip
    out = rollout(unwrap(policy), prompts, cfg, tok.decode, tok.eos_id if tok.eos_id is not None else 0)
    rewards = [verifiable_reward(template.clean(x), a, r.rollout.abstain_reward) for x, a in zip(out.texts, answers)]
    return {"val_reward": _mean(rewards), "val_accuracy": _mean([float(x == 1.0) for x in rewards])}


def _rollout_shape(r, block):
    return (torch.zeros(r.train.batch_size * r.rollout.group_size, block),)


def _best_reward(trainer):
    return {"best_val_reward": trainer.best}


def _grpo(r, s, template, policy, tok, block, pad, config):
    t, rt = r.train, s.rt
    (prompts, answers), (val_prompts, val_answers) = _verifiable(r, tok, template)
    _start(s, template, merge(config, {"train": {"best_metric": "val_reward", "best_mode": "max"}}), tok)
    t.best_metric, t.best_mode = "val_reward", "max"
    reference = copy.deepcopy(policy).eval().requires_grad_(False).to(rt.device)
    model = rt.wrap(policy)
    optimizer = adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))
    data = Rollouts(prompts, answers, model, reference, tok, template, r, s)
    step = lambda ms, b: grpo_step(ms["model"], b, r.beta, r.clip, loss_type=r.loss_type)
    evaluate = lambda ms: _greedy_eval(ms["model"], tok, template, val_prompts, val_answers, r)
    trainer = Trainer({"model": model}, {"model": optimizer}, [Phase(step)], rt, t, run_dir=s.run_dir,
                      evaluate=evaluate)  # fmt: skip
    describe = f"{len(prompts)} train / {len(val_prompts)} val prompts, verifiable"
    return _setup(s, trainer, data, [model], describe, _rollout_shape(r, block), _best_reward)


def _ppo(r, s, template, policy, tok, block, pad, config):
    t, rt = r.train, s.rt
    (prompts, answers), (val_prompts, val_answers) = _verifiable(r, tok, template)
    scorer = None
    if r.reward:
        scorer, reward_tok, _ = load_run(r.reward)
        if not isinstance(scorer, ScoreModel):
            raise ConfigError(f"{r.reward} is not a reward run (chat/reward writes one)")
        check_same_tokenizer(tok, reward_tok, f"the reward run {r.reward}")
        scorer = scorer.requires_grad_(False).to(rt.device)
        value = ScoreModel(copy.deepcopy(scorer.backbone), scorer.head_config)  # InstructGPT: V from the RM
        value.head.load_state_dict(scorer.head.state_dict())
    else:
        value = ScoreModel(copy.deepcopy(policy))
    value.requires_grad_(True).train()
    _start(s, template, merge(config, {"train": {"best_metric": "val_reward", "best_mode": "max"}}), tok)
    t.best_metric, t.best_mode = "val_reward", "max"
    reference = copy.deepcopy(policy).eval().requires_grad_(False).to(rt.device)
    model, value = rt.wrap(policy), rt.wrap(value)
    optimizers = {"model": adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2)),
                  "value": adamw(value, t.lr, t.weight_decay, (t.beta1, t.beta2))}  # fmt: skip
    data = Rollouts(prompts, answers, model, reference, tok, template, r, s, score=scorer, value=value)
    phases = [
        Phase(lambda ms, b: ppo_policy_step(ms["model"], b, r.clip), "model", "policy_loss"),
        Phase(lambda ms, b: ppo_value_step(ms["value"], b, r.value_clip, r.value_coef), "value", "value_loss"),
    ]
    evaluate = lambda ms: _greedy_eval(ms["model"], tok, template, val_prompts, val_answers, r)
    trainer = Trainer({"model": model, "value": value}, optimizers, phases, rt, t, run_dir=s.run_dir,
                      evaluate=evaluate)  # fmt: skip
    describe = f"{len(prompts)} train / {len(val_prompts)} val prompts, reward {r.reward or 'verifiable'}"
    return _setup(s, trainer, data, [model, value], describe, _rollout_shape(r, block), _best_reward)


train = runner.entry_point("chat", ChatRecipe, _prepare, single_process=False, check=_check)

__all__ = ["ChatRecipe", "STAGES", "train"]
