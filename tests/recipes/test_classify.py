import json

import numpy as np
import pytest
import torch

from genlab.core.errors import ConfigError, DataError
from genlab.data.images import ImageBatches, augment, load_digits
from genlab.recipes.classify import train

RECIPE = {
    "task": "classify",
    "model": {"preset": "cnn-digits"},
    "data": {"source": "digits", "val_size": 200},
    "train": {"max_steps": 60, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5, "eval_interval": 30,
              "progress": False, "tensorboard": False, "grad_clip": 0.0},
}  # fmt: skip


def test_image_batches_cover_an_epoch_and_resume_exactly():
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1).repeat(2, 1).repeat(2, 2)
    labels = np.arange(100, dtype=np.uint8)
    it = ImageBatches(images, labels, batch_size=10, seed=3)
    first = torch.cat([next(it)[1] for _ in range(10)])
    assert sorted(first.tolist()) == list(range(100))  # one epoch sees every image once
    x, _ = next(it)
    assert x.shape == (10, 1, 2, 2) and x.dtype == torch.float32 and float(x.max()) <= 1.0
    state = it.state_dict()
    a = [next(it)[1].tolist() for _ in range(12)]  # crosses an epoch boundary
    it2 = ImageBatches(images, labels, batch_size=10, seed=99)
    it2.load_state_dict(state)
    assert [next(it2)[1].tolist() for _ in range(12)] == a


def test_two_ranks_split_the_global_batch():
    images, labels = np.zeros((40, 2, 2), np.uint8), np.arange(40, dtype=np.uint8)
    one = next(ImageBatches(images, labels, 8, seed=1))[1]
    r0 = next(ImageBatches(images, labels, 4, seed=1, rank=0, world_size=2))[1]
    r1 = next(ImageBatches(images, labels, 4, seed=1, rank=1, world_size=2))[1]
    assert torch.equal(torch.cat([r0, r1]), one)
    with pytest.raises(DataError):
        ImageBatches(images[:3], labels[:3], 8)


def test_augment_translates_and_mirrors_each_image():
    x = torch.arange(2 * 25, dtype=torch.float32).reshape(2, 1, 5, 5)
    assert torch.equal(augment(x), x)  # nothing asked: untouched
    torch.manual_seed(0)
    for _ in range(20):
        y = augment(x, shift=2, fill=-1.0)
        assert y.shape == x.shape
        for i in range(2):
            kept = y[i, 0][y[i, 0] >= 0]  # the pixels of the image that stay inside the frame
            rows, cols = torch.nonzero(y[i, 0] >= 0, as_tuple=True)
            dr, dc = (kept.long() - 25 * i) // 5 - rows, (kept.long() - 25 * i) % 5 - cols
            assert len(set(dr.tolist())) == 1 and len(set(dc.tolist())) == 1  # one offset per image
            assert abs(int(dr[0])) <= 2 and abs(int(dc[0])) <= 2
    flips = [augment(x, flip=True) for _ in range(20)]
    assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(-1)) for f in flips for i in range(2))
    assert any(torch.equal(f[0], x[0].flip(-1)) for f in flips) and any(torch.equal(f[0], x[0]) for f in flips)


def test_augmented_batches_keep_labels_and_resume_exactly(tmp_path):
    images, labels = np.random.default_rng(0).integers(0, 256, (40, 6, 6), dtype=np.uint8), np.arange(40) % 10
    plain = next(ImageBatches(images, labels, 8, seed=1))
    torch.manual_seed(0)
    x, y = next(ImageBatches(images, labels, 8, seed=1, shift=2, flip=True))
    assert torch.equal(y, plain[1]) and x.shape == plain[0].shape and not torch.equal(x, plain[0])
    recipe = {**RECIPE, "data": {**RECIPE["data"], "shift": 1, "flip": True}}
    train(recipe, tmp_path / "a")
    train({**recipe, "train": {**recipe["train"], "max_steps": 30, "decay_steps": 60}}, tmp_path / "b")
    train({**recipe, "train": {**recipe["train"], "decay_steps": 60}}, tmp_path / "b", resume=True)
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in "ab")
    assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-7)  # the augmentation's draws resume too
    with pytest.raises(ConfigError, match="data.shift"):
        train({**RECIPE, "data": {**RECIPE["data"], "shift": -1}}, tmp_path / "c")


def test_classify_recipe_trains_and_scores_the_test_set(tmp_path):
    trainer = train(RECIPE, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 60 and results["test_accuracy"] > 0.6  # chance is 0.1
    losses = [r["train_loss"] for r in trainer.history if "train_loss" in r]
    assert losses[-1] < losses[0]
    assert len(load_digits("test")[0]) == 359


def test_classify_recipe_resumes_exactly(tmp_path):
    train(RECIPE, tmp_path / "a")
    half = {**RECIPE, "train": {**RECIPE["train"], "max_steps": 30, "decay_steps": 60}}
    train(half, tmp_path / "b")
    full = {**RECIPE, "train": {**RECIPE["train"], "decay_steps": 60}}
    train(full, tmp_path / "b", resume=True)
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-7)


def test_image_size_mismatch_names_the_fix(tmp_path):
    bad = {**RECIPE, "model": {"preset": "cnn-fashion"}}
    with pytest.raises(ConfigError, match="model.image_size=8"):
        train(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_label_smoothing_trains_against_the_smoothed_target(tmp_path):
    from genlab.objectives.classification import classification_loss

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
    logp = model(x).log_softmax(-1)
    target = torch.full((5, 3), 0.2 / 3).scatter_(1, y[:, None], 0.8 + 0.2 / 3)  # (1 - eps) one-hot + eps / K
    expected = -(target * logp).sum(-1).mean()
    assert classification_loss(model, (x, y), 0.2).item() == pytest.approx(expected.item(), abs=1e-6)
    assert classification_loss(model, (x, y)).item() == pytest.approx(-logp[range(5), y].mean().item(), abs=1e-6)
    smoothed = train({**RECIPE, "label_smoothing": 0.1, "train": {**RECIPE["train"], "max_steps": 30}}, tmp_path / "s")
    first = next(r["train_loss"] for r in smoothed.history if "train_loss" in r)
    plain = train({**RECIPE, "train": {**RECIPE["train"], "max_steps": 30}}, tmp_path / "p")
    assert first != next(r["train_loss"] for r in plain.history if "train_loss" in r)  # the recipe passes it on
    with pytest.raises(ConfigError, match="label_smoothing"):
        train({**RECIPE, "label_smoothing": 1.0}, tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before the run directory is made
