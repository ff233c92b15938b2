"""Image-classification recipe: an image source -> a CNN -> the shared trainer -> test accuracy.

The last ``val_size`` training images are held out for validation (model selection and the
best checkpoint); the test split is scored once at the end and written to ``results.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from genlab.core.config import from_dict, merge, save_yaml, to_dict
from genlab.core.errors import ConfigError
from genlab.core.seed import seed_everything
from genlab.data.images import ImageBatches, load_images, to_float
from genlab.models import build_model, family_of
from genlab.objectives.classification import classification_loss, evaluate_classifier
from genlab.recipes.runs import check_run_dir, create_run_dir, model_config, read_run_config
from genlab.training.checkpoint import find_checkpoint, load_weights
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime


@dataclass
class ImageDataConfig:
    source: str = "fashion-mnist"  # fashion-mnist | digits
    val_size: int = 5000  # the last images of the training split, held out


@dataclass
class ClassifyRecipe:
    task: str = "classify"
    model: dict = field(default_factory=lambda: {"preset": "cnn-fashion"})
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def train(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
    r: ClassifyRecipe = from_dict(ClassifyRecipe, recipe)
    rt = Runtime.from_env(r.train.device, r.train.dtype)
    check_run_dir(run_dir, resume, overwrite)
    log = print if rt.is_main else (lambda *a, **k: None)

    images, labels = load_images(r.data.source, "train")
    test_images, test_labels = load_images(r.data.source, "test")
    if not 0 < r.data.val_size < len(images):
        raise ConfigError(f"data.val_size={r.data.val_size} must be between 1 and {len(images) - 1}")
    n_train = len(images) - r.data.val_size
    cfg = model_config(r.model)
    if images.shape[1:] != (cfg.image_size, cfg.image_size):
        raise ConfigError(
            f"{r.data.source} images are {images.shape[1]}x{images.shape[2]} but the model expects "
            f"{cfg.image_size}x{cfg.image_size}: set model.image_size={images.shape[1]}"
        )
    rt.barrier()
    if rt.is_main:
        create_run_dir(run_dir, resume, overwrite)
    seed_everything(r.train.seed)
    model = rt.wrap(build_model(cfg))
    if rt.is_main and not resume:
        save_yaml(merge(to_dict(r), {"model": {"family": family_of(cfg), **to_dict(cfg)}}), run_dir / "config.yaml")
    t = r.train
    data = ImageBatches(images[:n_train], labels[:n_train], t.batch_size, t.seed, rt.rank, rt.world_size)
    val_x, val_y = to_float(torch.from_numpy(images[n_train:])), torch.from_numpy(labels[n_train:].astype("int64"))

    def evaluate(models):
        m = evaluate_classifier(models["model"], val_x, val_y)
        return {"val_loss": m["loss"], "val_accuracy": m["accuracy"]}

    trainer = Trainer(
        {"model": model}, {"model": adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))},
        [Phase(lambda ms, batch: classification_loss(ms["model"], batch))], rt, t, run_dir=run_dir,
        evaluate=evaluate, count=lambda batch: len(batch[0]), unit="img",
    )  # fmt: skip
    if resume:
        trainer.resume(find_checkpoint(run_dir / "checkpoints", "last"), data)
        log(f"resumed {run_dir} at step {trainer.step}")
    log(
        f"{family_of(cfg)} ({cfg.arch}) {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters | "
        f"{n_train:,} train / {len(val_x):,} val / {len(test_images):,} test images | {rt.describe()} | {run_dir}"
    )
    trainer.fit(data)
    if rt.is_main and trainer.stop_reason != "interrupted":
        best = load_classifier(run_dir)
        test = evaluate_classifier(
            best, to_float(torch.from_numpy(test_images)), torch.from_numpy(test_labels.astype("int64"))
        )
        results = {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "train_seconds": trainer.elapsed,
                   "steps": trainer.step, "best_val_loss": trainer.best}  # fmt: skip
        (run_dir / "results.json").write_text(json.dumps(results, indent=1))
        log(f"test accuracy {test['accuracy']:.4f} (best checkpoint) after {trainer.elapsed:.0f}s of training")
    rt.close()
    return trainer


def load_classifier(run_dir: Path, which: str = "best") -> nn.Module:
    """The trained classifier of a ``classify`` run, in eval mode."""
    recipe = read_run_config(run_dir)
    if recipe.get("task") != "classify":
        raise ConfigError(f"{run_dir} is a '{recipe.get('task', 'lm')}' run, not a classifier (train one: cnn/fashion)")
    model = build_model(model_config(recipe["model"]))
    load_weights(model, find_checkpoint(run_dir / "checkpoints", which) / "model.safetensors")
    return model.eval()
