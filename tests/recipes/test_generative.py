"""VAE and GAN recipes end to end on scikit-learn's digits: training, grids, exact resume, --grid."""

import pytest
import torch
from conftest import tiny_recipe
from test_cli import genlab, one_line_error

from genlab.core.errors import ConfigError
from genlab.models.gan import gan_parts
from genlab.recipes import load_recipe
from genlab.recipes.generative import load_generative, train_gan, train_vae


def recipe(name: str, steps: int, **train) -> dict:
    r = load_recipe(name)
    r["train"].update(
        {"max_steps": steps, "eval_interval": steps // 2, "progress": False, "tensorboard": False, **train}
    )
    r["grid_size"] = 16
    return r


def weights(model) -> dict[str, torch.Tensor]:
    parts = gan_parts(model, include_ema=True) if hasattr(model, "discriminator") else {"m": model}
    return {f"{k}.{n}": t for k, m in parts.items() for n, t in m.state_dict().items()}


def test_vae_recipe_trains_writes_grids_and_lowers_the_negative_elbo(tmp_path):
    trainer = train_vae(recipe("vae/digits", 60), tmp_path / "run")
    evals = [r["val_loss"] for r in trainer.history if "val_loss" in r]
    assert len(evals) == 2 and evals[-1] < evals[0]
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "step-00000030.png",
        "step-00000060.png",
    ]


@pytest.mark.parametrize(("name", "train_fn"), [("gan/digits", train_gan), ("vae/digits", train_vae)])
def test_exact_resume(tmp_path, name, train_fn):
    train_fn(recipe(name, 20, decay_steps=20), tmp_path / "a")
    train_fn(recipe(name, 10, decay_steps=20), tmp_path / "b")
    train_fn(recipe(name, 20, decay_steps=20), tmp_path / "b", resume=True)
    a, b = weights(load_generative(tmp_path / "a", "last")[0]), weights(load_generative(tmp_path / "b", "last")[0])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_gan_ema_is_trained_and_checkpointed(tmp_path):
    r = recipe("gan/digits", 10)
    r["model"]["ema"] = 0.9
    train_gan(r, tmp_path / "run")
    gan, _ = load_generative(tmp_path / "run", "last")
    g, e = gan.generator.state_dict(), gan.generator_ema.state_dict()
    assert any(not torch.equal(g[k], e[k]) for k in g)  # an average, not a copy
    images = gan.sample(8, generator=torch.Generator().manual_seed(0))
    assert images.shape == (8, 1, 8, 8) and float(images.min()) >= 0 and float(images.max()) <= 1


def test_sample_grid_cli(tmp_path, capsys):
    train_gan(recipe("gan/digits", 4), tmp_path / "gan")
    code, out, err = genlab(
        "sample", tmp_path / "gan", "--grid", tmp_path / "g.png", "--num-samples", "9", capsys=capsys
    )
    assert code == 0 and (tmp_path / "g.png").stat().st_size > 0, err
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size == (3 * 10 + 2, 3 * 10 + 2)  # 3 x 3 images of 8 px, 2 px padding
    one_line_error(capsys, "sample", tmp_path / "gan", match="--grid out.png")


def test_grid_of_a_language_model_run_is_a_clear_error(tmp_path, capsys, tiny_text):
    from genlab.recipes.lm import train

    train(tiny_recipe(tiny_text, max_steps=2), tmp_path / "lm")
    one_line_error(capsys, "sample", tmp_path / "lm", "--grid", tmp_path / "x.png", match="works for VAE and GAN runs")


def test_wrong_family_or_image_size(tmp_path):
    bad = recipe("vae/digits", 4)
    bad["model"] = {"preset": "dcgan-digits"}
    with pytest.raises(ConfigError, match="needs a vae preset"):
        train_vae(bad, tmp_path / "a")
    bad = recipe("vae/digits", 4)
    bad["model"] = {"preset": "vae-fashion"}
    with pytest.raises(ConfigError, match="model.image_size=8"):
        train_vae(bad, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_score_cli_gives_fid_and_inception_score(tmp_path, capsys):
    import json

    from genlab.recipes.classify import train as train_classifier

    clf = load_recipe("cnn/digits")
    clf["train"].update({"max_steps": 30, "eval_interval": 30, "progress": False, "tensorboard": False})
    train_classifier(clf, tmp_path / "clf")
    train_vae(recipe("vae/digits", 10), tmp_path / "vae")
    capsys.readouterr()  # drop the training logs
    code, out, err = genlab("score", tmp_path / "vae", "--classifier", tmp_path / "clf", "--n", "300", capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["samples"] == 300 and result["fid_fmnist"] > result["fid_fmnist_floor_train_vs_test"] >= 0
    assert 1.0 <= result["inception_score"] <= 10.0
    one_line_error(capsys, "score", tmp_path / "vae", "--classifier", tmp_path / "vae", match="not a classifier")
