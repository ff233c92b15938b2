"""ViT and the CNN + Transformer hybrid through the classify recipe: train, score, resume exactly."""

import json

import pytest

from genlab.recipes import load_recipe
from genlab.recipes.classify import train
from genlab.runs import load_run
from genlab.runs.evaluate import evaluate_run

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "image_size": 8, "n_classes": 10}
MODELS = {
    "vit": {"preset": "vit-fashion", **TINY, "patch_size": 2},  # a 4 x 4 grid of 2 x 2 patches
    "hybrid": {"preset": "hybrid-fashion", **TINY, "patch_size": 1, "stem_widths": [8]},  # one VGG stage: 4 x 4 map
}


def recipe(kind: str, steps: int = 40, **train) -> dict:
    return {
        "task": "classify",
        "model": MODELS[kind],
        "data": {"source": "digits", "val_size": 200},
        "train": {"max_steps": steps, "batch_size": 32, "lr": 1e-2, "warmup_steps": 5, "eval_interval": 20,
                  "progress": False, "tensorboard": False, "best_metric": "val_accuracy", "best_mode": "max",
                  **train},
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["vit", "hybrid"])
def test_recipe_trains_scores_and_resumes_exactly(kind, tmp_path):
    train(recipe(kind), tmp_path / "a")
    train(recipe(kind, 20, decay_steps=40), tmp_path / "b")
    train(recipe(kind, decay_steps=40), tmp_path / "b", resume=True)
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["steps"] == 40 and a["test_accuracy"] > 0.2  # chance is 0.1
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-7)
    model = load_run(tmp_path / "a").model
    assert model.config.arch == ("vit" if kind == "vit" else "hybrid-vgg")
    scores = evaluate_run(tmp_path / "a")  # genlab eval RUN
    assert scores["task"] == "classify" and scores["accuracy"] == pytest.approx(a["test_accuracy"])


def test_fashion_recipes_use_the_vit_family():
    assert load_recipe("vit/fashion")["model"]["preset"] == "vit-fashion-sl"
    assert load_recipe("hybrid/fashion")["model"]["preset"] == "hybrid-fashion"
