"""Generative image recipes: the VAE (task ``vae``) and the GAN (task ``gan``) on an image source.

Both train through the shared :class:`~genlab.training.engine.Trainer`: the VAE with one phase
(the negative ELBO, with KL warm-up), the GAN with two phases and two optimizers
(discriminator, then generator) and an EMA of the generator updated after every step.
At every evaluation a grid of samples is written to ``<run>/samples/step-XXXXXXXX.png``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from genlab.core.config import from_dict, merge, save_yaml, to_dict
from genlab.core.errors import ConfigError
from genlab.core.seed import seed_everything
from genlab.data.images import ImageBatches, load_images, to_float
from genlab.models import build_model, family_of
from genlab.models.gan import GAN, gan_parts
from genlab.models.vae import VAE
from genlab.objectives.adversarial import discriminator_step, generator_step
from genlab.objectives.elbo import kl_warmup, negative_elbo, vae_loss
from genlab.recipes.grid import save_grid
from genlab.recipes.runs import check_run_dir, create_run_dir, model_config, read_run_config
from genlab.training.checkpoint import find_checkpoint, load_weights
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime, unwrap


@dataclass
class GenerativeData:
    source: str = "fashion-mnist"
    val_size: int = 5000  # the last training images, held out (the VAE's validation ELBO)


@dataclass
class VAEOptions:
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    kl_warmup_steps: int = 0  # KL weight rises linearly from 0 to 1 over these steps


@dataclass
class GANOptions:
    kind: str = "nonsaturating"  # nonsaturating | hinge | wgan-gp
    smoothing: float = 0.0  # one-sided label smoothing of real targets (non-saturating only)
    gp_weight: float = 10.0  # WGAN-GP gradient-penalty weight
    d_lr_scale: float = 1.0  # discriminator lr = train.lr x this


@dataclass
class GenerativeRecipe:
    task: str = "vae"
    model: dict = field(default_factory=lambda: {"preset": "vae-fashion"})
    data: GenerativeData = field(default_factory=GenerativeData)
    train: TrainConfig = field(default_factory=TrainConfig)
    vae: VAEOptions = field(default_factory=VAEOptions)
    gan: GANOptions = field(default_factory=GANOptions)
    grid_size: int = 64  # samples per grid


def _setup(recipe: dict, run_dir: Path, resume: bool, overwrite: bool, family: str):
    r: GenerativeRecipe = from_dict(GenerativeRecipe, recipe)
    rt = Runtime.from_env(r.train.device, r.train.dtype)
    check_run_dir(run_dir, resume, overwrite)
    cfg = model_config(r.model)
    if family_of(cfg) != family:
        raise ConfigError(f"task '{r.task}' needs a {family} preset, got a {family_of(cfg)} model")
    images, labels = load_images(r.data.source, "train")
    if images.shape[1:] != (cfg.image_size, cfg.image_size):
        raise ConfigError(
            f"{r.data.source} images are {images.shape[1]}x{images.shape[2]} but the model expects "
            f"{cfg.image_size}x{cfg.image_size}: set model.image_size={images.shape[1]}"
        )
    if not 0 < r.data.val_size < len(images):
        raise ConfigError(f"data.val_size={r.data.val_size} must be between 1 and {len(images) - 1}")
    rt.barrier()
    if rt.is_main:
        create_run_dir(run_dir, resume, overwrite)
        if not resume:
            resolved = merge(to_dict(r), {"model": {"family": family_of(cfg), **to_dict(cfg)}})
            save_yaml(resolved, run_dir / "config.yaml")
    seed_everything(r.train.seed)
    n = len(images) - r.data.val_size
    data = ImageBatches(images[:n], labels[:n], r.train.batch_size, r.train.seed, rt.rank, rt.world_size)
    val = (to_float(torch.from_numpy(images[n:])), torch.from_numpy(labels[n:].astype("int64")))
    return r, rt, cfg, data, val


def _grid_labels(cfg, n: int) -> torch.Tensor | None:
    """Class-conditional grids: one row per class."""
    return torch.arange(n) % cfg.n_classes if cfg.n_classes else None


def train_vae(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
    r, rt, cfg, data, (val_x, val_y) = _setup(recipe, run_dir, resume, overwrite, "vae")
    model = rt.wrap(build_model(cfg))
    t, v = r.train, r.vae

    def loss(models, batch):  # `trainer.step` is the step being taken, also after a resume
        return vae_loss(models["model"], batch, beta=v.beta, kl_weight=kl_warmup(trainer.step, v.kl_warmup_steps))

    @torch.no_grad()
    def evaluate(models):
        m = unwrap(models["model"])
        y = val_y if cfg.n_classes else None
        nelbo = torch.cat([negative_elbo(m, val_x[i : i + 1000], None if y is None else y[i : i + 1000])
                           for i in range(0, len(val_x), 1000)])  # fmt: skip
        return {"val_loss": nelbo.mean().item()}

    def on_eval(step, metrics):
        m = unwrap(model)
        gen = torch.Generator().manual_seed(0)
        save_grid(m.sample(r.grid_size, _grid_labels(cfg, r.grid_size), generator=gen), _grid_path(run_dir, step))

    trainer = Trainer(
        {"model": model}, {"model": adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))}, [Phase(loss)], rt, t,
        run_dir=run_dir, evaluate=evaluate, on_eval=on_eval, count=lambda b: len(b[0]), unit="img",
    )  # fmt: skip
    return _fit(trainer, data, run_dir, resume, rt, f"vae {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M")


def train_gan(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
    r, rt, cfg, data, _ = _setup(recipe, run_dir, resume, overwrite, "gan")
    gan: GAN = build_model(cfg)
    parts = {k: rt.wrap(m) if k != "generator_ema" else m.to(rt.device) for k, m in gan_parts(gan, True).items()}
    t, g = r.train, r.gan
    opts = {
        "generator": adamw(parts["generator"], t.lr, t.weight_decay, (t.beta1, t.beta2)),
        "discriminator": adamw(parts["discriminator"], t.lr * g.d_lr_scale, t.weight_decay, (t.beta1, t.beta2)),
    }
    common = {"kind": g.kind, "latent_dim": cfg.latent_dim, "conditional": bool(cfg.n_classes)}
    phases = [
        Phase(functools.partial(discriminator_step, smoothing=g.smoothing, gp_weight=g.gp_weight, **common),
              "discriminator", "d_loss"),
        Phase(functools.partial(generator_step, **common), "generator", "g_loss"),
    ]  # fmt: skip

    def on_eval(step, metrics):
        gen = torch.Generator().manual_seed(0)
        save_grid(gan.sample(r.grid_size, _grid_labels(cfg, r.grid_size), generator=gen), _grid_path(run_dir, step))

    trainer = Trainer(
        parts, opts, phases, rt, t, run_dir=run_dir, on_eval=on_eval, count=lambda b: len(b[0]), unit="img",
        after_step=(lambda step: gan.update_ema()) if cfg.ema else None,
    )  # fmt: skip
    n_params = sum(p.numel() for k, m in parts.items() if k != "generator_ema" for p in m.parameters())
    return _fit(trainer, data, run_dir, resume, rt, f"gan {n_params / 1e6:.2f}M")


def _fit(trainer: Trainer, data, run_dir: Path, resume: bool, rt: Runtime, what: str) -> Trainer:
    if resume:
        trainer.resume(find_checkpoint(run_dir / "checkpoints", "last"), data)
    if rt.is_main:
        print(f"{what} parameters | {rt.describe()} | {run_dir}")
    trainer.fit(data)
    rt.close()
    return trainer


def _grid_path(run_dir: Path, step: int) -> Path:
    return run_dir / "samples" / f"step-{step:08d}.png"


def load_generative(run_dir: Path, which: str = "best") -> tuple[nn.Module, dict]:
    """The trained VAE or GAN of a run directory, in eval mode, and its resolved recipe."""
    recipe = read_run_config(run_dir)
    if recipe.get("task") not in ("vae", "gan"):
        raise ConfigError(f"{run_dir} is a '{recipe.get('task', 'lm')}' run: --grid works for VAE and GAN runs")
    model = build_model(model_config(recipe["model"]))
    root = run_dir / "checkpoints"
    path = find_checkpoint(root, which if (root / f"{which}.json").exists() else "last")
    if isinstance(model, VAE):
        load_weights(model, path / "model.safetensors")
    else:
        for name, part in gan_parts(model, include_ema=True).items():
            load_weights(part, path / f"{name}.safetensors")
        if model.generator_ema is not None:
            model.ema_updates.fill_(1)  # the stored EMA generator is trained: sample from it
    return model.eval(), recipe


def sample_grid(run_dir: Path, out: Path, n: int = 64, seed: int = 0, which: str = "best") -> Path:
    model, _ = load_generative(run_dir, which)
    labels = _grid_labels(model.config, n)
    return save_grid(model.sample(n, labels, generator=torch.Generator().manual_seed(seed)), out)


@torch.no_grad()
def score_samples(run_dir: Path, classifier_dir: Path, n: int = 10_000, seed: int = 0, which: str = "best") -> dict:
    """FID-FMNIST and Inception-style score of ``n`` samples of a VAE/GAN run, in the feature
    space of a genlab classifier run; plus the same distance between ``n`` real training and
    the real test images (the floor a perfect generator would reach at this sample size)."""
    from genlab.eval.sample_quality import extract, feature_stats, frechet_distance, inception_score
    from genlab.recipes.classify import load_classifier

    model, recipe = load_generative(run_dir, which)
    clf = load_classifier(classifier_dir)
    source = recipe["data"]["source"]
    train_images, _ = load_images(source, "train")
    test_images, _ = load_images(source, "test")
    gen = torch.Generator().manual_seed(seed)
    fake = torch.cat([model.sample(min(500, n - i), _grid_labels(model.config, min(500, n - i)), generator=gen)
                      for i in range(0, n, 500)])  # fmt: skip
    test = to_float(torch.from_numpy(test_images[:n]))
    idx = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:n].numpy()
    train = to_float(torch.from_numpy(train_images[idx]))
    stats_test = feature_stats(extract(clf.embed, test))
    return {
        "samples": n,
        "fid_fmnist": round(frechet_distance(*feature_stats(extract(clf.embed, fake)), *stats_test), 3),
        "fid_fmnist_floor_train_vs_test": round(
            frechet_distance(*feature_stats(extract(clf.embed, train)), *stats_test), 3
        ),
        "inception_score": round(inception_score(extract(lambda x: clf(x).softmax(-1), fake)), 3),
        "inception_score_real_test": round(inception_score(extract(lambda x: clf(x).softmax(-1), test)), 3),
    }
