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


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    from genlab.recipes.classify import train as train_classifier

    clf = load_recipe("cnn/digits")
    clf["train"].update({"max_steps": 30, "eval_interval": 30, "progress": False, "tensorboard": False})
    path = tmp_path_factory.mktemp("clf") / "clf"
    train_classifier(clf, path)
    return path


def test_score_cli_gives_fid_and_inception_score(tmp_path, capsys, digits_classifier):
    import json

    train_vae(recipe("vae/digits", 10), tmp_path / "vae")
    capsys.readouterr()  # drop the training logs
    code, out, err = genlab("score", tmp_path / "vae", "--classifier", digits_classifier, "--n", "300", capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["samples"] == 300 and result["fid_fmnist"] > result["fid_fmnist_floor_train_vs_test"] >= 0
    assert 1.0 <= result["inception_score"] <= 10.0
    one_line_error(capsys, "score", tmp_path / "vae", "--classifier", tmp_path / "vae", match="not a classifier")


def test_fid_during_training_picks_the_gan_checkpoint(tmp_path, digits_classifier):
    r = recipe("gan/digits", 8, eval_interval=4)
    r.update({"fid_classifier": str(digits_classifier), "fid_samples": 200})
    trainer = train_gan(r, tmp_path / "gan")
    fids = [row["val_fid"] for row in trainer.history if "val_fid" in row]
    assert len(fids) == 2 and all(f > 0 for f in fids)
    assert trainer.best == min(fids)  # the best checkpoint is the lowest FID
    v = recipe("vae/digits", 4, eval_interval=4)
    v.update({"fid_classifier": str(digits_classifier), "fid_samples": 200})
    rows = [row for row in train_vae(v, tmp_path / "vae").history if "val_fid" in row]
    assert len(rows) == 1 and rows[0]["val_loss"] != rows[0]["val_fid"]  # a VAE keeps its -ELBO as val_loss


@pytest.fixture(scope="module")
def vae_runs(tmp_path_factory):
    """A plain digits VAE and a conditional one trained without class 3, 30 steps each."""
    root = tmp_path_factory.mktemp("vaes")
    train_vae(recipe("vae/digits", 30), root / "vae")
    r = recipe("vae/digits", 30)
    r["model"]["n_classes"] = 10
    r["data"].update({"exclude_class": 3, "val_size": 200})
    train_vae(r, root / "cvae-no3")
    r = recipe("vae/digits", 30)
    r["data"].update({"exclude_class": 3, "val_size": 200, "perturb": 0.2})
    train_vae(r, root / "background-no3")
    return root


@pytest.mark.parametrize(
    ("view", "cols", "rows"),
    [("samples", 3, 3), ("reconstructions", 8, 4), ("interpolations", 10, 1)],  # 9 samples: 3 x 3; 9 -> 16
)  # test images: 8 real, their 8 reconstructions, 8 more, theirs; 9 // 10 -> one pair, 10 steps
def test_every_view_of_a_vae_writes_its_grid(vae_runs, tmp_path, capsys, view, cols, rows):
    from PIL import Image

    out = tmp_path / f"{view}.png"
    code, _, err = genlab(
        "sample", vae_runs / "vae", "--grid", out, "--show", view, "--num-samples", "9", capsys=capsys
    )
    assert code == 0, err
    assert Image.open(out).size == (cols * 10 + 2, rows * 10 + 2)  # 8-px digits, 2-px padding


def test_views_that_need_an_encoder_or_a_2d_latent_are_clear_errors(vae_runs, tmp_path, capsys):
    train_gan(recipe("gan/digits", 2), tmp_path / "gan")
    one_line_error(capsys, "sample", tmp_path / "gan", "--grid", tmp_path / "x.png", "--show", "reconstructions",
                   match="needs a VAE run")  # fmt: skip
    one_line_error(capsys, "sample", vae_runs / "vae", "--grid", tmp_path / "x.png", "--show", "manifold",
                   match="2-d latent")  # fmt: skip
    one_line_error(capsys, "sample", vae_runs / "vae", "--grid", tmp_path / "x.png", "--show", "mosaic",
                   match="unknown view")  # fmt: skip
    assert not (tmp_path / "x.png").exists()


def test_manifold_of_a_2d_vae(tmp_path):
    from PIL import Image

    from genlab.recipes.generative import save_view

    r = recipe("vae/digits", 4)
    r["model"]["latent_dim"] = 2
    train_vae(r, tmp_path / "vae2d")
    save_view(tmp_path / "vae2d", tmp_path / "m.png", "manifold")
    assert Image.open(tmp_path / "m.png").size == (15 * 10 + 2, 15 * 10 + 2)


def test_encode_writes_latents_with_labels(vae_runs, tmp_path, capsys):
    import json

    import numpy as np

    from genlab.data.images import load_images

    code, out, err = genlab("encode", vae_runs / "cvae-no3", "--output", tmp_path / "z.npz", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["latent_dim"] == 8
    z = np.load(tmp_path / "z.npz")
    _, labels = load_images("digits", "test")
    assert z["latents"].shape == (len(labels), 8) and z["latents"].dtype == np.float32
    assert np.array_equal(z["labels"], labels) and np.isfinite(z["logvar"]).all()
    code, _, err = genlab("encode", vae_runs / "vae", "--output", tmp_path / "v.tsv", capsys=capsys)
    assert code == 0, err
    vectors = np.loadtxt(tmp_path / "v.tsv", delimiter="\t")
    assert vectors.shape == (len(labels), 8)
    assert (tmp_path / "v.labels.tsv").read_text().split() == [str(c) for c in labels]
    one_line_error(capsys, "encode", vae_runs / "vae", "--output", tmp_path / "z.npz", match="exists")
    one_line_error(capsys, "encode", vae_runs / "vae", "--output", tmp_path / "z.csv", match=".npz or .tsv")


def test_eval_reports_likelihoods_and_the_held_out_class_auroc(vae_runs, capsys):
    import json

    from genlab.data.images import load_images

    code, out, err = genlab("eval", vae_runs / "cvae-no3", "--k", "20", capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    _, labels = load_images("digits", "test")
    assert result["test_images"] == int((labels != 3).sum()) and result["held_out_class"] == 3
    # the importance-weighted bound is tighter than the ELBO, on average
    assert 0 < result["test_iwae_nll"] < result["test_nelbo"]
    scores = ("nelbo", "iwae_nll", "complexity", "excess_nll", "kl", "iwae_nll_aggregate_prior")
    assert all(0.0 <= result[f"auroc_{k}"] <= 1.0 for k in (*scores, "nelbo_aggregate_prior"))
    assert 0 <= result["auroc_excess_nelbo_aggregate_prior"] <= 1
    assert 0 < result["test_iwae_nll_aggregate_prior"] != result["test_iwae_nll"]
    assert result["test_iwae_nll_aggregate_prior"] < result["test_nelbo_aggregate_prior"]
    # fewer training codes in the mixture prior: another estimate; none is an error
    code, out, err = genlab("eval", vae_runs / "cvae-no3", "--k", "4", "--prior-images", "50", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["test_iwae_nll_aggregate_prior"] != result["test_iwae_nll_aggregate_prior"]
    one_line_error(capsys, "eval", vae_runs / "cvae-no3", "--prior-images", "0", match="prior_images=0")
    code, out, _ = genlab("eval", vae_runs / "vae", "--k", "5", "--limit", "50", capsys=capsys)
    assert code == 0 and "held_out_class" not in json.loads(out) and json.loads(out)["test_images"] == 50


def test_likelihood_ratio_to_a_background_vae(vae_runs, capsys, monkeypatch):
    import json

    import genlab.recipes.generative as generative

    run, bg = vae_runs / "cvae-no3", vae_runs / "background-no3"
    code, out, err = genlab("eval", run, "--k", "4", "--background", bg, capsys=capsys)
    assert code == 0, err
    ratio = json.loads(out)["auroc_likelihood_ratio"]
    # the score is NLL(run) - NLL(background): with a background that gives every image the same
    # likelihood, it ranks exactly as the IWAE NLL does
    real = generative._test_likelihoods

    def flat_background(model, x, y, k, seed, desc, prior=None):
        out = real(model, x, y, k, seed, desc, prior)
        return out if not desc.startswith("background") else {n: torch.full_like(t, 7.0) for n, t in out.items()}

    monkeypatch.setattr(generative, "_test_likelihoods", flat_background)
    flat = generative.evaluate_vae(run, k=4, background=bg)
    assert flat["auroc_likelihood_ratio"] == flat["auroc_iwae_nll"] and 0.0 <= ratio <= 1.0
    capsys.readouterr()  # the progress bars of the call above
    # the background must be an unconditional VAE of the same classes
    one_line_error(capsys, "eval", run, "--k", "2", "--background", vae_runs / "cvae-no3", match="unconditional")
    one_line_error(capsys, "eval", run, "--k", "2", "--background", vae_runs / "vae", match="exclude_class=-1")


def test_aggregate_prior_codes_come_from_the_runs_own_training_images(vae_runs):
    import numpy as np

    import genlab.recipes.generative as generative
    from genlab.data.images import load_images

    model, r = generative.load_generative(vae_runs / "cvae-no3")
    images, labels = load_images("digits", "train")
    end = len(images) - r["data"]["val_size"]
    mu, logvar = generative._training_codes(model, r, 10**6)
    assert mu.shape == logvar.shape == (int((labels[:end] != 3).sum()), model.config.latent_dim)
    first = images[:end][labels[:end] != 3][:5]
    x = torch.from_numpy(first.astype(np.float32) / 255).unsqueeze(1)
    y = torch.from_numpy(labels[:end][labels[:end] != 3][:5].astype("int64"))
    torch.testing.assert_close(mu[:5], model.encode(x, y)[0])


def test_exclude_class_removes_it_from_training(tmp_path, monkeypatch):
    import genlab.recipes.generative as generative

    seen = []
    original = generative.ImageBatches

    def spy(images, labels, *args):
        seen.append(labels)
        return original(images, labels, *args)

    monkeypatch.setattr(generative, "ImageBatches", spy)
    r = recipe("vae/digits", 2)
    r["data"]["exclude_class"] = 5
    train_vae(r, tmp_path / "run")
    assert 5 not in set(seen[0].tolist()) and len(set(seen[0].tolist())) == 9
    r["data"]["exclude_class"] = 12
    with pytest.raises(Exception, match="exclude_class=12"):
        train_vae(r, tmp_path / "bad")
    r["data"].update({"exclude_class": -1, "perturb": 1.0})
    with pytest.raises(ConfigError, match="data.perturb=1.0"):
        train_vae(r, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_classifier_augmented_with_a_conditional_vae(vae_runs, tmp_path, monkeypatch):
    import numpy as np

    import genlab.recipes.classify as classify

    sizes = []
    original = classify.ImageBatches
    monkeypatch.setattr(classify, "ImageBatches", lambda x, y, *a: sizes.append((len(x), y)) or original(x, y, *a))
    clf = load_recipe("cnn/digits")
    clf["train"].update({"max_steps": 4, "eval_interval": 4, "progress": False, "tensorboard": False,
                         "batch_size": 16})  # fmt: skip
    clf["data"].update({"label_fraction": 0.1, "augment_run": str(vae_runs / "cvae-no3"), "augment_per_class": 7})
    classify.train(clf, tmp_path / "clf")
    real = sizes[0][0] - 70
    assert 0 < real < 160 and (sizes[0][1][-70:] == np.repeat(range(10), 7)).all()
    clf["data"]["augment_run"] = str(vae_runs / "vae")
    with pytest.raises(ConfigError, match="unconditional"):
        classify.train(clf, tmp_path / "clf2")


def test_nan_loss_stops_a_gan_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    import yaml

    import genlab.recipes.generative as generative
    from genlab.training.checkpoint import find_checkpoint

    real_step, calls = generative.generator_step, []

    def poisoned(models, batch, **kw):  # from step 7 on, G's loss is NaN
        calls.append(1)
        loss, metrics = real_step(models, batch, **kw)
        return (loss * float("nan") if len(calls) >= 7 else loss), metrics

    monkeypatch.setattr(generative, "generator_step", poisoned)
    r = recipe("gan/digits", 20, log_interval=2, eval_interval=4)
    (tmp_path / "gan.yaml").write_text(yaml.safe_dump(r))
    line = one_line_error(capsys, "train", tmp_path / "gan.yaml", "--out", tmp_path / "run", match="by step 8")
    assert "last good checkpoint" in line
    assert find_checkpoint(tmp_path / "run" / "checkpoints", "last").name.startswith("step-00000004")
    gan, _ = load_generative(tmp_path / "run", "last")
    assert all(torch.isfinite(p).all() for p in gan.parameters())


def test_conditional_sample_grid_has_one_column_per_class(vae_runs, tmp_path):
    from PIL import Image

    from genlab.recipes.generative import save_view

    save_view(vae_runs / "cvae-no3", tmp_path / "c.png", "samples", n=20)
    assert Image.open(tmp_path / "c.png").size == (10 * 10 + 2, 2 * 10 + 2)  # 10 classes x 2 rows of 8-px digits


def test_a_gaussian_vae_trains_and_scores_anomalies_without_a_floor(tmp_path):
    import genlab.recipes.generative as generative

    g = load_recipe("vae/fashion-gaussian")["model"]
    assert (g["likelihood"], g["sigma"]) == ("gaussian", 0.1)
    r = recipe("vae/digits", 30)
    r["model"].update({"likelihood": "gaussian", "sigma": 0.1})
    r["data"].update({"exclude_class": 3, "val_size": 200})
    train_vae(r, tmp_path / "run")
    model, _ = generative.load_generative(tmp_path / "run")
    assert model.config.sigma == 0.1
    result = generative.evaluate_vae(tmp_path / "run", k=4, prior_images=300)
    assert 0.0 <= result["auroc_nelbo_aggregate_prior"] <= 1.0
    # a Gaussian density has no per-image floor to subtract
    assert "auroc_excess_nll" not in result and "auroc_excess_nelbo_aggregate_prior" not in result
