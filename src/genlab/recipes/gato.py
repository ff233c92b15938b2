"""A Gato-style generalist (Reed et al. 2022, arXiv:2205.06175): one GPT over text, images and control.

``task: gato`` trains one :class:`genlab.models.gato.Gato` (a :mod:`genlab.models.gpt` GPT plus a
patch projection) on a mixture of tasks, each tokenised into one flat sequence by
:mod:`genlab.data.gato`:

- ``text``: windows of Shakespeare (``text.source``; real), byte-level BPE tokens;
- ``fashion``: Fashion-MNIST classification as text (real images): [image] " what is this? ->" " sneaker";
- ``scenes``: captions of Fashion-MNIST scenes (real items, generated layouts, templated captions:
  ``genlab.data.scenes``): [image] " caption:" " a sneaker to the left of a bag";
- ``tuxpaint``: captions of Tux Paint drawings (real, human-written: ``genlab.data.captions``);
- ``CartPole-v1``, ``Acrobot-v1``: expert trajectories (generated: simulated environments) of the
  PPO agents of ``rl/cartpole-ppo`` and ``rl/acrobot-ppo``, each sequence a demonstration prompt
  (the last steps of another expert episode) and then a window of an episode's steps.

``tasks`` holds the mixture weights (config data; weight 0 or absent: not trained). Each training
step is one batch of one task, the tasks interleaved deterministically in proportion to their
weights (the largest deficit goes next), so a task gets exactly round(steps x share) steps: what
its specialist gets (``benchmarks/gato.py``). The loss is the cross-entropy on text and action
targets only. The best checkpoint is the one with the lowest mean validation loss over the tasks.

At the end (and with ``genlab eval RUN``): the text validation loss, Fashion-MNIST test accuracy
(the answer read from greedy generated text), caption BLEU (sacrebleu) on each caption test
split, and for each environment the mean return over ``eval.episodes`` live episodes: the model
is prompted with one demonstration episode's tokens, then acts greedily (the most likely of the
environment's action tokens) from the observation tokens of each step.

Expert trajectories are cached under the data directory (``gato/trajectories``); an expert run
(``control.experts``) that does not exist yet is trained there first with its rl recipe.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.config import from_dict, merge, to_dict
from genlab.core.errors import ConfigError, DataError
from genlab.core.paths import data_dir
from genlab.data import gato as G
from genlab.data.batches import ShuffledBatches
from genlab.data.images import load_fashion_mnist
from genlab.data.sources import read_text
from genlab.data.text import RandomWindows, fixed_batches, split, token_stream
from genlab.eval.seq2seq import bleu
from genlab.generation.decode import GenerationConfig, generate
from genlab.models.gato import Gato, GatoConfig
from genlab.models.gpt import GPTConfig
from genlab.recipes import runner
from genlab.rl.envs import check_env_id, episode_seed, make_env
from genlab.rl.evaluate import greedy
from genlab.rl.runs import load_agent
from genlab.runs import checkpoint_path, read_run_config
from genlab.tokenizers import load_tokenizer
from genlab.tokenizers.bpe import BPETokenizer
from genlab.training.checkpoint import load_weights
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw

IMAGE_TASKS = ("fashion", "scenes", "tuxpaint")
CAPTION_TASKS = ("scenes", "tuxpaint")
CLASSIFY_PROMPT = " what is this? ->"
CAPTION_PROMPT = " caption:"
KINDS = {
    "text": "real (Shakespeare)",
    "fashion": "real (Fashion-MNIST)",
    "scenes": "generated (real Fashion-MNIST items placed on a canvas, templated captions)",
    "tuxpaint": "real (Tux Paint drawings, human-written captions)",
    "control": "generated (expert trajectories in simulated environments)",
}
#: Fashion-MNIST's classes as answers (the names genlab.data.scenes uses)
FASHION_NAMES = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
EXPERT_RECIPES = {"CartPole-v1": "rl/cartpole-ppo", "Acrobot-v1": "rl/acrobot-ppo"}


@dataclass
class ModelConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    dropout: float = 0.0
    value_init: str = "normal"  # the value bins' embeddings: ordinal | normal (genlab.models.gato.VALUE_INITS)


@dataclass
class LayoutConfig:
    bins: int = 1024
    mu: float = 100.0
    M: float = 256.0
    image_size: int = 32
    patch_size: int = 8


@dataclass
class TextConfig:
    source: str = "tinyshakespeare"
    vocab_size: int = 1024  # byte-level BPE, trained on the text (and the image tasks' answers)
    val_fraction: float = 0.1
    batch_size: int = 16  # windows of model.block_size tokens


@dataclass
class ImageConfig:
    batch_size: int = 32
    train_limit: int = 0  # the first N training images of each image task (0: all)
    val_images: int = 256  # validation loss: the first N of each val split
    fashion_val: int = 5000  # Fashion-MNIST's validation split: the last N of its training split
    scenes_train: int = 10000  # generated scenes per split
    scenes_val: int = 500
    scenes_test: int = 500


@dataclass
class ControlConfig:
    experts: dict[str, str] = field(default_factory=dict)  # env -> an RL run directory ("" or absent: the cache's)
    episodes: int = 40  # expert training episodes per environment
    val_episodes: int = 10  # held-out expert episodes: validation loss and the evaluation prompts
    seed: int = 40_000
    prompt_tokens: int = 48  # the demonstration prompt: as many whole steps as fit
    batch_size: int = 16


@dataclass
class GatoEvalConfig:
    episodes: int = 100  # live episodes per environment
    test_seed: int = 20_000
    fashion: int = 1000  # Fashion-MNIST test images (0: all 10,000)
    captions: int = 200  # caption test examples per caption task (0: all)
    batch_size: int = 64  # prompts decoded together
    max_new_tokens: int = 40


def _train_defaults() -> TrainConfig:
    return TrainConfig(max_steps=1500, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1, eval_interval=250,
                       eval_batches=4, log_interval=25)  # fmt: skip


@dataclass
class GatoRecipe:
    task: str = "gato"
    tasks: dict[str, float] = field(default_factory=lambda: {"text": 1.0, "fashion": 1.0, "CartPole-v1": 1.0})
    model: ModelConfig = field(default_factory=ModelConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    text: TextConfig = field(default_factory=TextConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    eval: GatoEvalConfig = field(default_factory=GatoEvalConfig)
    train: TrainConfig = field(default_factory=_train_defaults)


def active_tasks(r: GatoRecipe) -> dict[str, float]:
    """The tasks with a positive weight, their weights normalised to shares."""
    on = {k: float(w) for k, w in r.tasks.items() if w > 0}
    total = sum(on.values())
    return {k: w / total for k, w in on.items()}


def check(r: GatoRecipe) -> None:
    known = ["text", *IMAGE_TASKS, *EXPERT_RECIPES]
    for k, w in r.tasks.items():
        if k not in known:
            raise ConfigError(f"unknown gato task '{k}'; choose from {', '.join(known)}")
        if w < 0:
            raise ConfigError(f"tasks.{k}: a weight must be >= 0, got {w}")
        if k in EXPERT_RECIPES:
            check_env_id(k)
    if not active_tasks(r):
        raise ConfigError("tasks: give at least one task a positive weight")
    if r.control.val_episodes < 1 or r.control.episodes < 2:
        raise ConfigError("control.episodes must be >= 2 and control.val_episodes >= 1")


# --- data ------------------------------------------------------------------------------------


def _fashion(split_name: str, r: GatoRecipe) -> tuple[list[np.ndarray], list[str]]:
    if split_name == "test":
        x, y = load_fashion_mnist("test")
        n = r.eval.fashion or len(x)
        x, y = x[:n], y[:n]
    else:
        x, y = load_fashion_mnist("train")
        cut = len(x) - r.images.fashion_val
        x, y = (x[:cut], y[:cut]) if split_name == "train" else (x[cut:], y[cut:])
    return list(x), [FASHION_NAMES[int(k)] for k in y]


def _scenes(split_name: str, r: GatoRecipe) -> tuple[list[np.ndarray], list[str]]:
    n = {"train": r.images.scenes_train, "val": r.images.scenes_val, "test": r.images.scenes_test}[split_name]
    return _make_scenes(split_name, n)


@functools.lru_cache(maxsize=8)
def _make_scenes(split_name: str, n: int) -> tuple[list[np.ndarray], list[str]]:
    """Generated scenes (deterministic in split and n), made once per process: the tokenizer and the task read them."""
    from genlab.data.scenes import make_scenes

    scenes = make_scenes(split_name, n)
    return [s.image for s in scenes], [s.caption for s in scenes]


def _tuxpaint(split_name: str, r: GatoRecipe) -> tuple[list[np.ndarray], list[str]]:
    from genlab.data.captions import load_tuxpaint

    items = load_tuxpaint(split_name, size=64)
    return [c.image for c in items], [c.caption.lower() for c in items]


IMAGE_SOURCES = {"fashion": _fashion, "scenes": _scenes, "tuxpaint": _tuxpaint}


def image_split(task: str, split_name: str, r: GatoRecipe) -> tuple[list[np.ndarray], list[str]]:
    """(images, answer texts) of an image task's split: train, val or test."""
    images, texts = IMAGE_SOURCES[task](split_name, r)
    if split_name == "train" and r.images.train_limit:
        images, texts = images[: r.images.train_limit], texts[: r.images.train_limit]
    return images, texts


def image_prompt(task: str) -> str:
    return CLASSIFY_PROMPT if task == "fashion" else CAPTION_PROMPT


def tokenizer_text(r: GatoRecipe) -> str:
    """What the BPE learns from: the text source, the class names and the caption training texts."""
    parts = [read_text(r.text.source), CLASSIFY_PROMPT + CAPTION_PROMPT]
    parts += [" ".join(FASHION_NAMES)] * 20
    for task in CAPTION_TASKS:  # every listed task, trained or not: a specialist (its weights zeroed) gets the same BPE
        if task in r.tasks:
            parts.append("\n".join(image_split(task, "train", r)[1][:5000]))
    return "\n".join(parts)


class ImageTexts:
    """Endless shuffled batches of one image task: [image slots] prompt answer<eos> (module docstring)."""

    def __init__(self, images, texts, task, tok, layout: G.TokenLayout, batch_size: int, seed: int, block_size: int):
        self.images, self.layout, self.eos = images, layout, tok.eos_id
        self.prompt = tok.encode(image_prompt(task))
        room = block_size - layout.n_patches - len(self.prompt) - 1  # answers cut to fit the context, <eos> kept
        if room < 1:
            raise ConfigError(f"{task}: {layout.n_patches} image slots and the prompt fill model.block_size")
        self.answers = [tok.encode(" " + t)[:room] + [tok.eos_id] for t in texts]
        self.batches = ShuffledBatches(len(images), min(batch_size, len(images)), self.collate, seed)

    def collate(self, index: np.ndarray) -> dict:
        rows = [G.image_text_example(self.images[i], self.prompt, self.answers[i], self.layout) for i in index]
        return G.collate(rows, self.layout, self.eos)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self.batches)

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)


def prompt_steps(layout: G.TokenLayout, env: str, r: GatoRecipe) -> tuple[int, int]:
    """Steps of the demonstration prompt, and steps of the window after it, that fit the context."""
    n = layout.step_tokens(env)
    k_prompt = r.control.prompt_tokens // n
    k_window = (r.model.block_size - k_prompt * n) // n
    if k_window < 1:
        raise ConfigError(f"{env}: control.prompt_tokens={r.control.prompt_tokens} leaves no room for a step of "
                          f"{n} tokens in model.block_size={r.model.block_size}")  # fmt: skip
    return k_prompt, k_window


def demo_prompt(episode: dict, layout: G.TokenLayout, env: str, k: int) -> np.ndarray:
    """The last k steps of an expert episode as tokens (all of it when shorter, padded at the front
    by repeating its first step, so every prompt of an environment has one length)."""
    obs, act = episode["obs"][-k:], episode["actions"][-k:]
    if len(act) < k:
        pad = k - len(act)
        obs, act = np.concatenate([np.repeat(obs[:1], pad, 0), obs]), np.concatenate([np.repeat(act[:1], pad), act])
    return G.episode_tokens(obs, act, layout, env)


class ControlWindows:
    """Endless batches of one environment: each row a demonstration prompt (the end of another
    expert episode) and then a window of whole steps of an expert episode."""

    def __init__(self, episodes: list[dict], env: str, layout: G.TokenLayout, k_prompt: int, k_window: int,
                 batch_size: int, seed: int):  # fmt: skip
        if len(episodes) < 2:
            raise DataError(f"{env}: need at least 2 expert episodes (one prompts the other)")
        self.episodes, self.env, self.layout = episodes, env, layout
        self.k_prompt, self.k_window, self.batch_size = k_prompt, k_window, batch_size
        self.prompts = [demo_prompt(e, layout, env, k_prompt) for e in episodes]
        self.generator = torch.Generator().manual_seed(seed)

    def example(self, e: int, p: int, start: float) -> np.ndarray:
        ep = self.episodes[e]
        T = len(ep["actions"])
        t0 = int(start * max(T - self.k_window, 0) + 0.5)
        window = G.episode_tokens(ep["obs"][t0 : t0 + self.k_window], ep["actions"][t0 : t0 + self.k_window],
                                  self.layout, self.env)  # fmt: skip
        return np.concatenate([self.prompts[p], window])

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        n, B = len(self.episodes), self.batch_size
        e = torch.randint(n, (B,), generator=self.generator)
        p = (e + torch.randint(1, n, (B,), generator=self.generator)) % n  # another episode prompts it
        start = torch.rand(B, generator=self.generator, dtype=torch.float64)
        rows = [(self.example(int(e[b]), int(p[b]), float(start[b])), None) for b in range(B)]
        return G.collate(rows, self.layout, pad_id=0)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class Mixture:
    """One batch of one task per step, interleaved in proportion to the shares: the task with the
    largest deficit (step x share - its batches so far) goes next (ties: the listed order)."""

    def __init__(self, streams: dict, shares: dict[str, float]):
        self.streams, self.names = streams, list(streams)
        self.shares = np.array([shares[k] for k in self.names])
        self.counts = np.zeros(len(self.names), dtype=np.int64)

    @staticmethod
    def schedule(shares: dict[str, float], steps: int) -> dict[str, int]:
        """The batches each task gets in ``steps`` steps (what a specialist of it is given)."""
        m = Mixture(dict.fromkeys(shares), shares)
        for _ in range(steps):
            m._pick()
        return dict(zip(m.names, m.counts.tolist()))

    def _pick(self) -> str:
        k = int(np.argmax((self.counts.sum() + 1) * self.shares - self.counts))
        self.counts[k] += 1
        return self.names[k]

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        task = self._pick()
        return {**next(self.streams[task]), "task": task}

    def state_dict(self) -> dict:
        return {"counts": torch.from_numpy(self.counts.copy()),
                "streams": {k: s.state_dict() for k, s in self.streams.items()}}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.counts = state["counts"].numpy().astype(np.int64).copy()
        for k, s in self.streams.items():
            s.load_state_dict(state["streams"][k])


# --- expert trajectories -----------------------------------------------------------------------


def expert_dir(env: str, r: GatoRecipe) -> Path:
    given = r.control.experts.get(env)
    return Path(given) if given else data_dir() / "gato" / "experts" / Path(EXPERT_RECIPES[env]).name


def ensure_expert(env: str, r: GatoRecipe, log=print) -> Path:
    """The expert's run directory, trained with its rl recipe first when it holds no run."""
    path = expert_dir(env, r)
    if not (path / "config.yaml").is_file():
        from genlab.recipes import load_recipe, run_task  # the task registry: no task module imported here

        log(f"gato: training the {env} expert ({EXPERT_RECIPES[env]}) into {path}")
        run_task(merge(load_recipe(EXPERT_RECIPES[env]), {"train": {"progress": False}}), run_dir=path)
    return path


def rollouts(act, env: str, episodes: int, seed: int) -> list[dict]:
    """Whole episodes of a greedy policy: [{"obs": (T, O) float32, "actions": (T,) int64, "return"}]."""
    out = []
    e = make_env(env)
    try:
        for k in range(episodes):
            o, _ = e.reset(seed=episode_seed(seed, 0, k))
            obs, acts, total, done = [], [], 0.0, False
            while not done:
                a = int(np.asarray(act(np.asarray(o, dtype=np.float32)[None]))[0])
                obs.append(np.asarray(o, dtype=np.float32))
                acts.append(a)
                o, reward, term, trunc, _ = e.step(a)
                total, done = total + float(reward), term or trunc
            out.append({"obs": np.stack(obs), "actions": np.array(acts, dtype=np.int64), "return": total})
    finally:
        e.close()
    return out


def expert_episodes(env: str, r: GatoRecipe, log=print) -> tuple[list[dict], list[dict]]:
    """(train, val) expert episodes of ``env``, cached under the data directory by the expert's weights."""
    run = ensure_expert(env, r, log)
    weights = checkpoint_path(run, "best") / "model.safetensors"
    key = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    n, seed = r.control.episodes + r.control.val_episodes, r.control.seed
    cache = data_dir() / "gato" / "trajectories" / f"{env}-{key}-{seed}-{n}.npz"
    if not cache.is_file():
        eps = rollouts(greedy(load_agent(run).policy), env, n, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, lengths=[len(e["actions"]) for e in eps], obs=np.concatenate([e["obs"] for e in eps]),
                 actions=np.concatenate([e["actions"] for e in eps]), returns=[e["return"] for e in eps])  # fmt: skip
        tmp.replace(cache)
    z = np.load(cache)
    cuts = np.cumsum(z["lengths"])[:-1]
    eps = [{"obs": o, "actions": a, "return": float(g)}
           for o, a, g in zip(np.split(z["obs"], cuts), np.split(z["actions"], cuts), z["returns"])]  # fmt: skip
    return eps[: r.control.episodes], eps[r.control.episodes :]


# --- the model's layout and the run ------------------------------------------------------------------


def make_layout(r: GatoRecipe, text_vocab: int) -> G.TokenLayout:
    on = active_tasks(r)
    envs = {}
    for env in EXPERT_RECIPES:
        if env in on:
            e = make_env(env)
            envs[env] = [int(np.prod(e.observation_space.shape)), int(e.action_space.n)]
            e.close()
    images = any(t in on for t in IMAGE_TASKS)
    return G.TokenLayout(text_vocab=text_vocab, bins=r.layout.bins, mu=r.layout.mu, M=r.layout.M, envs=envs,
                         image_size=r.layout.image_size, patch_size=r.layout.patch_size, images=images,
                         text=images or "text" in on)  # fmt: skip


def model_config(r: GatoRecipe, layout: G.TokenLayout) -> GatoConfig:
    m = r.model
    gpt = GPTConfig(vocab_size=layout.vocab_size, block_size=m.block_size, n_layer=m.n_layer, n_head=m.n_head,
                    n_embd=m.n_embd, dropout=m.dropout)  # fmt: skip
    return GatoConfig(gpt=gpt, image_id=layout.image_id if layout.images else -1, n_patches=layout.n_patches,
                      patch_dim=layout.patch_dim, value_offset=layout.obs_offset, value_bins=layout.bins,
                      value_init=m.value_init, layout=to_dict(layout))  # fmt: skip


def gato_loss(model, batch: dict) -> torch.Tensor:
    """Cross-entropy on the text and action targets (the others are IGNORE)."""
    logits = model(batch["ids"], batch.get("patches"))  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=G.IGNORE)


@torch.no_grad()
def mean_target_loss(model, batches: list[dict], device) -> float:
    """Token-weighted mean loss over fixed batches."""
    total, count = 0.0, 0
    for b in batches:
        b = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
        n = int((b["targets"] != G.IGNORE).sum())
        total += float(gato_loss(model, b)) * n
        count += n
    return total / max(count, 1)


@dataclass
class TaskData:
    """What training and evaluation read: the streams, the validation batches, the evaluation splits."""

    streams: dict
    val: dict[str, list[dict]]
    control_val: dict[str, list[dict]]  # env -> held-out expert episodes (the evaluation's prompts)
    describe: str


def task_data(r: GatoRecipe, tok, layout: G.TokenLayout, seed: int, log=print) -> TaskData:
    on, streams, val, control_val, sizes = active_tasks(r), {}, {}, {}, []
    block = r.model.block_size
    tokens = token_stream(r.text.source, tok)
    train_tokens, val_tokens = split(tokens, r.text.val_fraction)
    if "text" in on:
        streams["text"] = TextStream(RandomWindows(train_tokens, block, r.text.batch_size, seed=seed))
        fixed = fixed_batches(val_tokens, block, r.text.batch_size, r.train.eval_batches, seed=seed + 1)
        val["text"] = [{"ids": x, "targets": y} for x, y in fixed]
        sizes.append(f"text {len(train_tokens):,} tokens")
    for i, task in enumerate(t for t in IMAGE_TASKS if t in on):
        images, texts = image_split(task, "train", r)
        streams[task] = ImageTexts(images, texts, task, tok, layout, r.images.batch_size, seed + 10 + i, block)
        vi, vt = image_split(task, "val", r)
        vi, vt = vi[: r.images.val_images], vt[: r.images.val_images]
        vs = ImageTexts(vi, vt, task, tok, layout, r.images.batch_size, 0, block)
        idx = np.arange(len(vi))
        val[task] = [vs.collate(idx[j : j + r.images.batch_size]) for j in range(0, len(vi), r.images.batch_size)]
        sizes.append(f"{task} {len(images):,} images")
    for i, env in enumerate(e for e in EXPERT_RECIPES if e in on):
        train_eps, val_eps = expert_episodes(env, r, log)
        kp, kw = prompt_steps(layout, env, r)
        streams[env] = ControlWindows(train_eps, env, layout, kp, kw, r.control.batch_size, seed + 20 + i)
        vw = ControlWindows(val_eps + train_eps[:1], env, layout, kp, kw, r.control.batch_size, seed + 30 + i)
        val[env] = [next(vw) for _ in range(r.train.eval_batches)]
        control_val[env] = val_eps
        ret = np.mean([e["return"] for e in train_eps])
        sizes.append(f"{env} {len(train_eps)} expert episodes (mean return {ret:.1f})")
    return TaskData(streams, val, control_val, ", ".join(sizes))


class TextStream:
    """RandomWindows as batches of the mixture's form: ids and targets (every target is text)."""

    def __init__(self, windows: RandomWindows):
        self.windows = windows

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        x, y = next(self.windows)
        return {"ids": x, "targets": y}

    def state_dict(self) -> dict:
        return self.windows.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.windows.load_state_dict(state)


def _prepare(r: GatoRecipe, s: runner.Session) -> runner.Setup:
    t = r.train
    tok = load_tokenizer(s.run_dir) if s.resume else BPETokenizer.train(tokenizer_text(r), r.text.vocab_size)
    layout = make_layout(r, tok.vocab_size)
    data = task_data(r, tok, layout, t.seed, s.log)
    cfg = model_config(r, layout)
    s.start(to_dict(r), tok)  # the layout follows from the recipe and the tokenizer (load_gato)
    model = s.rt.wrap(Gato(cfg))
    shares = active_tasks(r)
    mixture = Mixture(data.streams, shares)

    def loss(ms, batch):
        return gato_loss(ms["model"], batch)

    def validate(ms) -> dict:
        out = {f"val_loss_{k}": mean_target_loss(ms["model"], v, s.rt.device) for k, v in data.val.items()}
        out["val_loss"] = float(np.mean(list(out.values())))
        return out

    trainer = Trainer({"model": model}, {"model": adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))},
                      [Phase(loss)], s.rt, t, run_dir=s.run_dir, evaluate=validate,
                      count=lambda b: int((b["targets"] != G.IGNORE).sum()), unit="target")  # fmt: skip

    def finish(trainer: Trainer) -> dict:
        best = load_gato(s.run_dir)
        out = {"tasks": shares, "task_steps": Mixture.schedule(shares, trainer.step),
               "best_val_loss": trainer.best if math.isfinite(trainer.best) else None,
               **evaluate_model(best.model, best.tokenizer, best.layout, r, data)}  # fmt: skip
        s.log("gato: " + ", ".join(f"{k} {v:.4g}" for k, v in out["metrics"].items()))
        return out

    first = next(iter(data.val.values()))[0]  # a reference batch for the FLOPs: the first validation one
    per_step = int((first["targets"] != G.IGNORE).sum())
    return runner.Setup(
        trainer, mixture, sum(p.numel() for p in model.parameters()),
        f"tasks {', '.join(f'{k} {v:.2f}' for k, v in shares.items())} | {data.describe} | vocab {layout.vocab_size} "
        f"(text {tok.vocab_size})",
        runner.flops_per_item(loss, {"model": model}, first, s.rt.device, per_step),
        lambda steps: steps * per_step, finish,
    )  # fmt: skip


# --- evaluation ------------------------------------------------------------------------------


@dataclass
class LoadedGato:
    model: Gato  # eval mode
    tokenizer: BPETokenizer
    layout: G.TokenLayout
    recipe: GatoRecipe


def load_gato(run_dir: str | Path, which: str = "best") -> LoadedGato:
    """A gato run directory back into its model, tokenizer, token layout and recipe."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if config.get("task") != "gato":
        raise ConfigError(f"{run_dir} is a '{config.get('task', 'lm')}' run, not a gato run")
    r = from_dict(GatoRecipe, config)
    tok = load_tokenizer(run_dir)
    layout = make_layout(r, tok.vocab_size)
    model = Gato(model_config(r, layout))
    load_weights(model, checkpoint_path(run_dir, which) / "model.safetensors")
    return LoadedGato(model.eval(), tok, layout, r)


def non_text_ids(layout: G.TokenLayout) -> tuple[int, ...]:
    return tuple(range(layout.text_vocab, layout.vocab_size))


@torch.no_grad()
def answer_images(model: Gato, tok, layout: G.TokenLayout, images: list[np.ndarray], prompt: str,
                  max_new_tokens: int = 24, batch_size: int = 64) -> list[str]:  # fmt: skip
    """Greedy text after [image] prompt, for each image: the generation engine over the bound patches
    (only text ids may be generated; an end-of-text id ends the answer)."""
    layout.check_modality("image")
    ids = [layout.image_id] * layout.n_patches + tok.encode(prompt)
    max_new_tokens = min(max_new_tokens, model.config.block_size - len(ids))
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, eos_id=tok.eos_id,
                           banned_tokens=non_text_ids(layout))  # fmt: skip
    device = next(model.parameters()).device
    out = []
    for j in range(0, len(images), batch_size):
        chunk = images[j : j + batch_size]
        patches = torch.from_numpy(np.stack([G.image_patches(im, layout) for im in chunk])).to(device)
        gens = generate(model.with_patches(patches), [ids] * len(chunk), cfg, decode=tok.decode)
        out += [g[0].text.strip() for g in gens]
    return out


def _truncate(cache, length: int) -> None:
    """Forget every position from ``length`` on (a uniform cache): the prompt's keys stay."""
    cache.lengths.fill_(length)
    cache.length = length


@torch.no_grad()
def play(model: Gato, layout: G.TokenLayout, env: str, prompts: list[np.ndarray], episodes: int,
         seed: int) -> np.ndarray:  # fmt: skip
    """Returns of ``episodes`` live episodes (stepped together, one batch row each; a finished
    episode's row leaves the batch), each row prompted with a demonstration (``prompts[i % len]``,
    token arrays of one length). Each step feeds the last action token, the observation's value
    tokens and the separator over the KV cache and takes the most likely of the environment's action
    tokens. When the context is full, the cache keeps the prompt and re-reads the last half-window of
    steps after it (the positions training used)."""
    layout.check_modality(env)
    device = next(model.parameters()).device
    block, (dim, A) = model.config.block_size, layout.envs[env]
    off, n_step = layout.action_offset(env), layout.step_tokens(env)
    P = len(prompts[0])
    keep = max(0, (block - P - (dim + 1)) // n_step // 2)  # steps re-read after a refill
    envs = [make_env(env) for _ in range(episodes)]
    try:
        obs = np.stack([np.asarray(e.reset(seed=episode_seed(seed, 0, i))[0], np.float32) for i, e in enumerate(envs)])
        returns = np.zeros(episodes)
        rows = np.arange(episodes)  # the episodes still running, in batch order
        cache = model.make_cache(episodes, block)
        model(torch.from_numpy(np.stack([prompts[i % len(prompts)] for i in range(episodes)])).to(device), cache=cache)
        steps: list[np.ndarray] = []  # (rows, n_step) tokens of each step taken, for the running rows
        while len(rows):
            cur = G.observation_tokens(obs[rows], layout)  # (rows, O + 1)
            new = cur if not steps else np.concatenate([steps[-1][:, -1:], cur], axis=1)
            if cache.length + new.shape[1] > block:
                _truncate(cache, P)
                new = np.concatenate([*(steps[-keep:] if keep else []), cur], axis=1)
            logits = model(torch.from_numpy(new).to(device), cache=cache, last_only=True)[:, -1]  # (rows, V)
            actions = logits[:, off : off + A].argmax(-1).cpu().numpy()  # greedy over the env's action tokens
            steps.append(np.concatenate([cur, (actions + off)[:, None]], axis=1))
            running = np.ones(len(rows), dtype=bool)
            for j, i in enumerate(rows):
                o, reward, term, trunc, _ = envs[i].step(int(actions[j]))
                returns[i] += float(reward)
                obs[i] = np.asarray(o, np.float32)
                running[j] = not (term or trunc)
            if not running.all():  # the finished rows leave the batch and the cache
                rows = rows[running]
                if len(rows):
                    cache.reorder(torch.from_numpy(np.flatnonzero(running)).to(device))
                    steps = [s[running] for s in steps[-keep - 1 :]]
    finally:
        for e in envs:
            e.close()
    return returns


def evaluate_model(model: Gato, tok, layout: G.TokenLayout, r: GatoRecipe, data: TaskData | None = None,
                   tasks: list[str] | None = None, log=print) -> dict:  # fmt: skip
    """Every trained task's metric (module docstring); ``tasks``: only these (each checked against the
    run's modalities: a one-line error for one it was not trained on)."""
    on = active_tasks(r)
    names = list(on) if tasks is None else list(tasks)
    for t in names:
        layout.check_modality("image" if t in IMAGE_TASKS else t)
        if t not in on:
            raise ConfigError(f"this Gato run was not trained on '{t}'; it knows the tasks: {', '.join(on)}")
    if data is None:
        data = task_data(_only(r, names), tok, layout, r.train.seed, log)
    device = next(model.parameters()).device
    e = r.eval
    metrics, kinds, detail = {}, {}, {}
    for t in names:
        if t == "text":
            metrics["text_val_loss"] = mean_target_loss(model, data.val["text"], device)
            kinds["text"] = KINDS["text"]
        elif t in IMAGE_TASKS:
            images, texts = image_split(t, "test", r)
            if t in CAPTION_TASKS and e.captions:
                images, texts = images[: e.captions], texts[: e.captions]
            longest = 8 if t == "fashion" else e.max_new_tokens  # a class name is a few tokens
            hyps = answer_images(model, tok, layout, images, image_prompt(t), longest, e.batch_size)
            if t == "fashion":
                metrics["fashion_accuracy"] = float(np.mean([h == y for h, y in zip(hyps, texts)]))
            else:
                metrics[f"{t}_bleu"] = bleu(hyps, texts)
            detail[t] = [{"answer": h, "reference": y} for h, y in zip(hyps[:5], texts[:5])]
            kinds[t] = KINDS[t]
        else:
            kp, _ = prompt_steps(layout, t, r)
            prompts = [demo_prompt(ep, layout, t, kp) for ep in data.control_val[t]]
            returns = play(model, layout, t, prompts, e.episodes, e.test_seed)
            metrics[f"{t}_return"] = float(returns.mean())
            detail[t] = {"return_std": float(returns.std()), "episodes": len(returns),
                         "expert_val_return": float(np.mean([x["return"] for x in data.control_val[t]]))}  # fmt: skip
            kinds[t] = KINDS["control"]
    return {"metrics": metrics, "data_kinds": kinds, "examples": detail, "layout": to_dict(layout)}


def _only(r: GatoRecipe, names: list[str]) -> GatoRecipe:
    """The recipe with only ``names`` as tasks (the evaluation data of those alone)."""
    return from_dict(GatoRecipe, merge(to_dict(r), {"tasks": {k: (v if k in names else 0.0)
                                                              for k, v in r.tasks.items()}}))  # fmt: skip


def evaluate_gato(run_dir: str | Path, which: str = "best", tasks: list[str] | None = None,
                  episodes: int = 0) -> dict:  # fmt: skip
    """``genlab eval RUN`` of a gato run: every trained task's test metric (``tasks``: only these)."""
    g = load_gato(run_dir, which)
    r = g.recipe
    if episodes:
        r = from_dict(GatoRecipe, merge(to_dict(r), {"eval": {"episodes": episodes}}))
    return {"task": "gato", **evaluate_model(g.model, g.tokenizer, g.layout, r, tasks=tasks)}


#: the hand-made CartPole episode of :func:`layout_example` (and of the layout test)
EXAMPLE_OBS = np.array([[0.0, 1.6, -1.6, 300.0], [-300.0, 0.0, 1.6, -1.6]], dtype=np.float32)
EXAMPLE_ACTIONS = np.array([1, 0])


def layout_example(run_dir: str | Path | None = None, env: str = "CartPole-v1", steps: int = 2) -> str:
    """The token layout, readably: without a run, a hand-made 2-step CartPole episode in a layout of 10
    text ids; with a run, its layout, the first ``steps`` steps of a held-out expert episode of ``env``
    and, when it has images, a Fashion-MNIST classification example."""
    if run_dir is None:
        layout = G.TokenLayout(text_vocab=10, envs={"CartPole-v1": [4, 2]})
        ids = G.episode_tokens(EXAMPLE_OBS, EXAMPLE_ACTIONS, layout, "CartPole-v1")
        head = "a 2-step CartPole-v1 episode, text ids 0..9 (values 10..1033, '|' 1034, image 1035, actions 1036-1037)"
        return f"{head}\n{G.render_layout(ids, layout)}"
    g = load_gato(run_dir)
    layout, parts = g.layout, []
    if env in layout.envs:
        _, val = expert_episodes(env, g.recipe, log=lambda *a: None)
        ep = val[0]
        ids = G.episode_tokens(ep["obs"][:steps], ep["actions"][:steps], layout, env)
        parts.append(f"{steps} steps of a {env} expert episode\n{G.render_layout(ids, layout)}")
    else:
        layout.check_modality(env)
    if layout.images:
        text = g.tokenizer.encode(CLASSIFY_PROMPT + " sneaker") + [g.tokenizer.eos_id]
        ids = [layout.image_id] * layout.n_patches + text
        parts.append(f"a Fashion-MNIST example\n{G.render_layout(ids, layout, g.tokenizer.decode)}")
    return "\n\n".join(parts)


train = runner.entry_point("gato", GatoRecipe, _prepare, single_process=True, check=check)
