"""Generative image recipes: the VAE (task ``vae``) and the GAN (task ``gan``) on an image source.

Both train through the shared :class:`~genlab.training.engine.Trainer`: the VAE with one phase
(the negative ELBO, with KL warm-up), the GAN with two phases and two optimizers
(discriminator, then generator) and an EMA of the generator updated after every step.
At every evaluation a grid of samples is written to ``<run>/samples/step-XXXXXXXX.png``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from genlab.core.config import merge, to_dict
from genlab.core.errors import ConfigError
from genlab.data.images import ImageBatches, load_images, perturb, select, to_float
from genlab.models import build_model, family_of
from genlab.models.gan import GAN, gan_parts
from genlab.models.vae import VAE
from genlab.objectives.adversarial import discriminator_step, generator_step
from genlab.objectives.elbo import (
    importance_samples,
    kl_warmup,
    log_prior,
    model_elbo_terms,
    negative_elbo,
    nll_from_log_weights,
    vae_loss,
)
from genlab.recipes import runner
from genlab.recipes.grid import save_grid
from genlab.runs import load_run, model_config, read_run_config
from genlab.runs.images import class_cycle, draw, draw_generator
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import unwrap


@dataclass
class GenerativeData:
    source: str = "fashion-mnist"
    val_size: int = 5000  # the last training images, held out (the VAE's validation ELBO)
    exclude_class: int = -1  # leave this class out of training (anomaly detection); -1 keeps all
    label_fraction: float = 1.0  # train on this stratified fraction of each class (e.g. 0.01: 1% of the labels)
    perturb: float = 0.0  # VAE: replace this fraction of training pixels with noise (a likelihood-ratio background)


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
    fid_classifier: str = ""  # a classify run: each evaluation also measures FID-FMNIST against the val images
    fid_samples: int = 2000  # samples per evaluation FID (a GAN's best checkpoint is then the lowest FID)


def _prepare(r: GenerativeRecipe, s: runner.Session, family: str):
    """The data and model config of a VAE or GAN run; the run directory is started."""
    rt, t, d = s.rt, r.train, r.data
    cfg = model_config(r.model)
    if family_of(cfg) != family:
        raise ConfigError(f"task '{r.task}' needs a {family} preset, got a {family_of(cfg)} model")
    images, labels = load_images(d.source, "train")
    if images.shape[1:] != (cfg.image_size, cfg.image_size):
        raise ConfigError(
            f"{d.source} images are {images.shape[1]}x{images.shape[2]} but the model expects "
            f"{cfg.image_size}x{cfg.image_size}: set model.image_size={images.shape[1]}"
        )
    if not 0 < d.val_size < len(images):
        raise ConfigError(f"data.val_size={d.val_size} must be between 1 and {len(images) - 1}")
    if not 0.0 <= d.perturb < 1.0:
        raise ConfigError(f"data.perturb={d.perturb} must be in [0, 1): the fraction of pixels replaced by noise")
    n = len(images) - d.val_size
    train_x, train_y = select(images[:n], labels[:n], d.exclude_class, d.label_fraction, t.seed)
    val_x, val_y = select(images[n:], labels[n:], d.exclude_class, d.label_fraction, t.seed)
    batches = lambda: ImageBatches(train_x, train_y, t.batch_size, t.seed, rt.rank, rt.world_size)
    data = batches()
    val = (to_float(torch.from_numpy(val_x)), torch.from_numpy(val_y.astype("int64")))
    s.start(merge(to_dict(r), {"model": {"family": family_of(cfg), **to_dict(cfg)}}))
    return cfg, data, val, next(batches()), f"{len(train_x):,} train / {len(val_x):,} val images"


def _fid_metric(r: GenerativeRecipe, val_x: torch.Tensor):
    """``fid(sample)``: FID-FMNIST of ``r.fid_samples`` images ``sample(n, generator)`` draws against
    the validation images, in the features of the classifier run ``r.fid_classifier``; None when
    none is configured."""
    if not r.fid_classifier:
        return None
    from genlab.eval.sample_quality import extract, feature_stats, frechet_distance

    if r.fid_samples < 2:
        raise ConfigError(f"fid_samples={r.fid_samples} must be at least 2")
    clf = _classifier(Path(r.fid_classifier))
    real = feature_stats(extract(clf.embed, val_x))

    def fid(sample: Callable[[int, torch.Generator], torch.Tensor]) -> float:
        fake = sample(r.fid_samples, torch.Generator().manual_seed(0))
        return frechet_distance(*feature_stats(extract(clf.embed, fake)), *real)

    return fid


def _classifier(run_dir: Path) -> nn.Module:
    """The trained classifier of a ``classify`` run (the feature space of FID-FMNIST), in eval mode."""
    model, _, recipe = load_run(run_dir)
    if recipe.get("task") != "classify":
        raise ConfigError(f"{run_dir} is a '{recipe.get('task', 'lm')}' run, not a classifier (train one: cnn/fashion)")
    return model


def _grid_rows(cfg) -> int | None:
    """Images per grid row: the number of classes for a conditional model, else square."""
    return cfg.n_classes or None


def _save_grid(model: nn.Module, r: GenerativeRecipe, run_dir: Path, step: int) -> None:
    gen = torch.Generator().manual_seed(0)
    images = model.sample(r.grid_size, class_cycle(model.config, r.grid_size), generator=gen)
    save_grid(images, run_dir / "samples" / f"step-{step:08d}.png", nrow=_grid_rows(model.config))


def _images_per_step(t: TrainConfig):
    return lambda steps: steps * t.batch_size * t.grad_accum


def _prepare_vae(r: GenerativeRecipe, s: runner.Session) -> runner.Setup:
    cfg, data, (val_x, val_y), reference, sizes = _prepare(r, s, "vae")
    rt, t, v = s.rt, r.train, r.vae
    model = rt.wrap(build_model(cfg))

    def loss(models, batch):  # `trainer.step` is the step being taken, also after a resume
        batch = (perturb(batch[0], r.data.perturb), batch[1])
        return vae_loss(models["model"], batch, beta=v.beta, kl_weight=kl_warmup(trainer.step, v.kl_warmup_steps))

    fid = _fid_metric(r, val_x)

    @torch.no_grad()
    def evaluate(models):
        m = models["model"]
        y = val_y if cfg.n_classes else None
        nelbo = torch.cat([negative_elbo(m, val_x[i : i + 1000], None if y is None else y[i : i + 1000])
                           for i in range(0, len(val_x), 1000)])  # fmt: skip
        return {"val_loss": nelbo.mean().item(), **({"val_fid": fid(lambda n, g: draw(m, n, g))} if fid else {})}

    trainer = Trainer(
        {"model": model}, {"model": adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))}, [Phase(loss)], rt, t,
        run_dir=s.run_dir, evaluate=evaluate, on_eval=lambda step, _: _save_grid(unwrap(model), r, s.run_dir, step),
        count=lambda b: len(b[0]), unit="img",
    )  # fmt: skip
    fpi = runner.flops_per_item(loss, {"model": model}, reference, rt.device, t.batch_size)
    finish = lambda trainer: {"best_val_loss": trainer.best}
    n_params = sum(p.numel() for p in model.parameters())
    return runner.Setup(trainer, data, n_params, sizes, fpi, _images_per_step(t), finish)


train_vae = runner.entry_point("vae", GenerativeRecipe, _prepare_vae)


def _prepare_gan(r: GenerativeRecipe, s: runner.Session) -> runner.Setup:
    cfg, data, (val_x, _), reference, sizes = _prepare(r, s, "gan")
    rt, t, g = s.rt, r.train, r.gan
    gan: GAN = build_model(cfg)
    parts = {k: rt.wrap(m) if k != "generator_ema" else m.to(rt.device) for k, m in gan_parts(gan, True).items()}
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
    fid = _fid_metric(r, val_x)

    def evaluate(models):  # a GAN has no likelihood: with a classifier, the best checkpoint is the lowest FID
        ema = "generator_ema" in models and int(gan.ema_updates) > 0  # as GAN.sample picks its generator
        value = fid(lambda n, gen: draw_generator(models["generator_ema" if ema else "generator"], cfg, n, gen))
        return {"val_loss": value, "val_fid": value}

    trainer = Trainer(
        parts, opts, phases, rt, t, run_dir=s.run_dir, evaluate=evaluate if fid else None,
        on_eval=lambda step, _: _save_grid(gan, r, s.run_dir, step), count=lambda b: len(b[0]), unit="img",
        after_step=gan.update_ema if cfg.ema else None,
    )  # fmt: skip
    trained = {k: m for k, m in parts.items() if k != "generator_ema"}
    fpi = runner.flops_per_item([p.loss for p in phases], trained, reference, rt.device, t.batch_size)
    finish = lambda trainer: {"best_val_loss": trainer.best} if fid else {}
    n_params = sum(p.numel() for m in trained.values() for p in m.parameters())
    return runner.Setup(trainer, data, n_params, sizes, fpi, _images_per_step(t), finish)


train_gan = runner.entry_point("gan", GenerativeRecipe, _prepare_gan)


def load_generative(run_dir: Path, which: str = "best") -> tuple[nn.Module, dict]:
    """The trained VAE or GAN of a run directory (:func:`genlab.runs.load_run`) and its resolved recipe."""
    recipe = read_run_config(run_dir)
    if recipe.get("task") not in ("vae", "gan"):
        raise ConfigError(f"{run_dir} is a '{recipe.get('task', 'lm')}' run: --grid works for VAE and GAN runs")
    model, _, recipe = load_run(run_dir, which)
    return model, recipe


@torch.no_grad()
def score_samples(run_dir: Path, classifier_dir: Path, n: int = 10_000, seed: int = 0, which: str = "best") -> dict:
    """FID-FMNIST and Inception-style score of ``n`` samples of a VAE/GAN run, in the feature
    space of a genlab classifier run; plus the same distance between ``n`` real training and
    the real test images (the floor a perfect generator would reach at this sample size)."""
    from genlab.eval.sample_quality import extract, feature_stats, frechet_distance, inception_score

    model, recipe = load_generative(run_dir, which)
    clf = _classifier(classifier_dir)
    source = recipe["data"]["source"]
    train_images, _ = load_images(source, "train")
    test_images, _ = load_images(source, "test")
    gen = torch.Generator().manual_seed(seed)
    fake = draw(model, n, gen)
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


VIEWS = ["samples", "reconstructions", "interpolations", "manifold"]


def _test_images(recipe: dict, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n test images (n, 1, H, W) drawn with ``seed``, and their labels."""
    images, labels = load_images(recipe["data"]["source"], "test")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n].numpy()
    return to_float(torch.from_numpy(images[idx])), torch.from_numpy(labels[idx].astype("int64"))


def save_view(run_dir: Path, out: Path, view: str = "samples", n: int = 64, seed: int = 0, which: str = "best") -> Path:
    """A PNG grid of one view of a trained VAE or GAN.

    samples: ``n`` samples (one column per class for conditional models). The rest are VAE only:
    reconstructions: rows of 8 real test images (``n`` rounded up to whole rows) alternate with
    their reconstructions;
    interpolations: each row decodes 10 points on the line between the latent means of two test
    images (the ends are the two reconstructions); manifold: the decoded 2-d latent plane (15 x 15).
    """
    if view not in VIEWS:
        raise ConfigError(f"unknown view '{view}'; choose from {VIEWS}")
    model, recipe = load_generative(run_dir, which)
    if view == "samples":
        labels = class_cycle(model.config, n)
        images = model.sample(n, labels, generator=torch.Generator().manual_seed(seed))
        return save_grid(images, out, nrow=_grid_rows(model.config))
    if not isinstance(model, VAE):
        raise ConfigError(f"--show {view} needs a VAE run; {run_dir} is a GAN (it has no encoder): use --show samples")
    y_of = (lambda y: y) if model.config.n_classes else (lambda y: None)
    if view == "manifold":
        if model.config.latent_dim != 2:
            raise ConfigError(f"--show manifold needs a 2-d latent (preset vae-fashion-2d); this VAE has "
                              f"latent_dim={model.config.latent_dim}")  # fmt: skip
        images = model.manifold(15)
        return save_grid(images.flatten(0, 1), out, nrow=15)
    if view == "reconstructions":
        per_row = 8
        n = -(-n // per_row) * per_row  # whole rows
        x, y = _test_images(recipe, n, seed)
        recon = model.reconstruct(x, y_of(y))
        rows = [t for i in range(0, n, per_row) for t in (x[i : i + per_row], recon[i : i + per_row])]
        return save_grid(torch.cat(rows), out, nrow=per_row)
    pairs = max(1, n // 10)
    x, y = _test_images(recipe, 2 * pairs, seed)
    images = model.interpolate(x[:pairs], x[pairs:], 10, y_of(y[:pairs]), y_of(y[pairs:]))
    return save_grid(images.flatten(0, 1), out, nrow=10)


@torch.no_grad()
def encode_images(run_dir: Path, out: Path, split: str = "test", which: str = "best") -> dict:
    """The latent means mu(x) of every image of a split under a trained VAE, with their labels, in a
    ``.npz`` (``latents`` float32 (N, L), ``logvar`` float32 (N, L), ``labels`` int64 (N,)); a path
    ending in ``.tsv`` writes the TensorBoard projector's pair instead: vectors in ``out`` and the
    labels in ``out`` with ``.labels.tsv``."""
    import numpy as np

    if split not in ("train", "test"):
        raise ConfigError(f"split must be train or test, got '{split}'")
    if out.suffix not in (".npz", ".tsv"):
        raise ConfigError(f"the output must end in .npz or .tsv, got '{out.name}'")
    if out.exists():
        raise ConfigError(f"{out} exists; choose another name (nothing was overwritten)")
    model, recipe = load_generative(run_dir, which)
    if not isinstance(model, VAE):
        raise ConfigError(f"{run_dir} is a GAN run: 'encode' needs a VAE (a GAN has no encoder)")
    images, labels = load_images(recipe["data"]["source"], split)
    x = to_float(torch.from_numpy(images))
    y = torch.from_numpy(labels.astype("int64"))
    mus, logvars = [], []
    for i in range(0, len(x), 1000):
        mu, logvar = model.encode(x[i : i + 1000], y[i : i + 1000] if model.config.n_classes else None)
        mus.append(mu)
        logvars.append(logvar)
    mu, logvar = torch.cat(mus).numpy(), torch.cat(logvars).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, latents=mu, logvar=logvar, labels=labels.astype("int64"))
    else:
        np.savetxt(out, mu, delimiter="\t", fmt="%.6g")
        out.with_suffix(".labels.tsv").write_text("".join(f"{int(c)}\n" for c in labels))
    return {"images": len(mu), "latent_dim": mu.shape[1], "split": split, "output": str(out)}


@torch.no_grad()
def evaluate_vae(
    run_dir: Path,
    k: int = 100,
    which: str = "best",
    limit: int = 0,
    seed: int = 0,
    background: Path | None = None,
    prior_images: int = 20_000,
) -> dict:
    """Test-set likelihood of a VAE run in nats per image: the negative ELBO and the importance-weighted
    NLL with ``k`` samples (Burda et al. 2015). For a run trained without one class (``data.exclude_class``)
    the test set is split: the metrics are on the nine trained classes, and the held-out class is scored
    as anomalies (AUROC, anomaly = positive) by each quantity and by the IWAE NLL corrected for input
    complexity (:mod:`genlab.eval.anomaly`), also with the aggregate posterior of ``prior_images``
    training images as the prior (:func:`genlab.objectives.elbo.aggregate_posterior_log_prob`).
    ``background``: a VAE run on the same classes trained on perturbed images (``data.perturb``);
    adds the likelihood-ratio score NLL - NLL_background."""
    from genlab.eval.anomaly import auroc, pixel_entropy, png_code_length

    if k < 1 or prior_images < 1:
        raise ConfigError(f"k={k} and prior_images={prior_images} must be at least 1")
    model, recipe = load_generative(run_dir, which)
    if not isinstance(model, VAE):
        raise ConfigError(f"{run_dir} is a GAN run: likelihoods need a VAE")
    held_out = int(recipe["data"].get("exclude_class", -1))
    if background is not None:
        bg_model, bg_recipe = load_generative(background, which)
        if not isinstance(bg_model, VAE) or bg_model.config.n_classes:
            raise ConfigError(f"{background} must be an unconditional VAE run to serve as the background model")
        bg_held_out = int(bg_recipe["data"].get("exclude_class", -1))
        if (bg_recipe["data"]["source"], bg_held_out) != (recipe["data"]["source"], held_out):
            raise ConfigError(
                f"the background run {background} was trained on other data ({bg_recipe['data']['source']}, "
                f"exclude_class={bg_held_out}) than {run_dir} ({recipe['data']['source']}, exclude_class={held_out})"
            )
    images, labels = load_images(recipe["data"]["source"], "test")
    if limit:
        images, labels = images[:limit], labels[:limit]
    x, y = to_float(torch.from_numpy(images)), torch.from_numpy(labels.astype("int64"))
    codes = _training_codes(model, recipe, prior_images) if held_out != -1 else None
    t = _test_likelihoods(model, x, y, k, seed, "test likelihood", prior=codes)
    nelbo_t, nll_t = t["nelbo"], t["nll"]
    inside = y != held_out
    result = {
        "test_images": int(inside.sum()),
        "test_nelbo": round(nelbo_t[inside].mean().item(), 3),
        "test_iwae_nll": round(nll_t[inside].mean().item(), 3),
        "iwae_k": k,
    }
    if held_out != -1:
        is_anomaly = (~inside).numpy()
        result["held_out_class"] = held_out
        result["auroc_nelbo"] = round(auroc(nelbo_t.numpy(), is_anomaly), 4)
        result["auroc_iwae_nll"] = round(auroc(nll_t.numpy(), is_anomaly), 4)
        # corrected scores, see genlab.eval.anomaly: the IWAE NLL minus the PNG code length (Serrà et
        # al. 2020) or minus the Bernoulli floor of the image; and the KL term (rate) alone
        result["auroc_complexity"] = round(auroc(nll_t.numpy() - png_code_length(images), is_anomaly), 4)
        floor = pixel_entropy(x) if model.config.likelihood == "bernoulli" else None
        if floor is not None:
            result["auroc_excess_nll"] = round(auroc((nll_t - floor).numpy(), is_anomaly), 4)
        result["auroc_kl"] = round(auroc(t["kl"].numpy(), is_anomaly), 4)
        # the same decoder with the aggregate posterior of the training images as its prior
        nll_a, nelbo_a = t["nll_aggregate_prior"], t["nelbo_aggregate_prior"]
        result["test_nelbo_aggregate_prior"] = round(nelbo_a[inside].mean().item(), 3)
        result["test_iwae_nll_aggregate_prior"] = round(nll_a[inside].mean().item(), 3)
        result["auroc_nelbo_aggregate_prior"] = round(auroc(nelbo_a.numpy(), is_anomaly), 4)
        result["auroc_iwae_nll_aggregate_prior"] = round(auroc(nll_a.numpy(), is_anomaly), 4)
        if floor is not None:
            excess_a = (nelbo_a - floor).numpy()
            result["auroc_excess_nelbo_aggregate_prior"] = round(auroc(excess_a, is_anomaly), 4)
        if background is not None:  # Ren et al. 2019: the background model's NLL carries the image statistics
            bg_nll = _test_likelihoods(bg_model, x, None, k, seed, "background likelihood")["nll"]
            result["auroc_likelihood_ratio"] = round(auroc((nll_t - bg_nll).numpy(), is_anomaly), 4)
    return result


@torch.no_grad()
def _test_likelihoods(
    model: VAE, x: torch.Tensor, y: torch.Tensor | None, k: int, seed: int, desc: str, prior: tuple | None = None
) -> dict[str, torch.Tensor]:
    """Per image, float64 (N,) nats: ``nelbo`` (one z, the KL exact), ``nll`` (IWAE, k samples) and ``kl``;
    with ``prior`` (the (mu, logvar) of images whose aggregate posterior replaces N(0, I)) also
    ``nll_aggregate_prior`` and ``nelbo_aggregate_prior`` (-ELBO averaged over the same k samples)."""
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the single z of the ELBO's reconstruction term
    out: dict[str, list] = {"nelbo": [], "nll": [], "kl": []}
    if prior is not None:
        out.update(nll_aggregate_prior=[], nelbo_aggregate_prior=[])
    step = 250
    for i in tqdm(range(0, len(x), step), desc=f"{desc} (k={k})", unit="batch", leave=False):
        yb = y[i : i + step] if model.config.n_classes else None
        recon, kl_b = model_elbo_terms(model, x[i : i + step], yb)
        out["nelbo"].append(recon + kl_b)  # = negative_elbo, keeping the KL term apart
        out["kl"].append(kl_b)
        z, partial = importance_samples(model, x[i : i + step], yb, k=k, generator=gen)  # one set of decoder calls
        out["nll"].append(nll_from_log_weights(partial + log_prior(z)))
        if prior is not None:
            log_w = partial + log_prior(z, prior)  # (k, B)
            out["nll_aggregate_prior"].append(nll_from_log_weights(log_w))
            out["nelbo_aggregate_prior"].append(-log_w.mean(0))
    return {key: torch.cat(v).double() for key, v in out.items()}


@torch.no_grad()
def _training_codes(model: VAE, recipe: dict, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of q(z | x) for the first ``n`` training images of the run (its own split and classes)."""
    d = recipe["data"]
    images, labels = load_images(d["source"], "train")
    end = len(images) - int(d.get("val_size", 0))
    images, labels = select(images[:end], labels[:end], int(d.get("exclude_class", -1)))
    x = to_float(torch.from_numpy(images[:n]))
    y = torch.from_numpy(labels[:n].astype("int64")) if model.config.n_classes else None
    codes = [model.encode(x[i : i + 1000], None if y is None else y[i : i + 1000]) for i in range(0, len(x), 1000)]
    return torch.cat([c[0] for c in codes]), torch.cat([c[1] for c in codes])
