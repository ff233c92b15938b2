"""genlab cluster | project | basket end to end on tiny features, tiny runs and hand-made baskets."""

import json

import numpy as np
import pytest
import yaml
from conftest import tiny_recipe
from test_cli import genlab, one_line_error

from genlab.recipes import load_recipe, run_task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def blobs(tmp_path):
    """Three far-apart blobs (60 points, 5 dims) as a .npy, their labels as a .npy and as names."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(3, 5)) * 10)[y] + 0.05 * rng.normal(size=(60, 5))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "y.txt").write_text("".join(f"{['cat', 'dog', 'emu'][c]}\n" for c in y))
    return tmp_path


def run_json(capsys, *args) -> dict:
    code, out, err = genlab(*args, capsys=capsys)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_cluster_a_npy_scores_against_labels_and_writes_the_clusters(blobs, capsys):
    for method in ("kmeans", "gmm"):
        out = blobs / f"{method}.npy"
        r = run_json(capsys, "cluster", blobs / "x.npy", "--method", method, "--k", "3", "--labels",
                     blobs / "y.npy", "--out", out)  # fmt: skip
        assert r["points"] == 60 and r["dim"] == 5 and r["nmi"] == pytest.approx(1.0) and r["ari"] == pytest.approx(1)
        assert sorted(r["sizes"]) == [20, 20, 20]
        assert np.load(out).shape == (60,)
    r = run_json(capsys, "cluster", blobs / "x.npy", "--k", "3")  # no labels: sizes only
    assert "nmi" not in r and sum(r["sizes"]) == 60


def test_project_writes_coordinates_and_png_in_2d_and_3d(blobs, capsys):
    r = run_json(capsys, "project", blobs / "x.npy", "--labels", blobs / "y.txt", "--out", blobs / "xy.npy",
                 "--png", blobs / "xy.png")  # fmt: skip
    assert r["method"] == "pca" and r["points"] == 60 and r["dim_in"] == 5
    assert np.load(blobs / "xy.npy").shape == (60, 2)
    assert (blobs / "xy.png").read_bytes()[:8] == PNG_MAGIC
    r = run_json(capsys, "project", blobs / "x.npy", "--method", "tsne", "--dim", "3", "--png", blobs / "3d.png",
                 "--colour", "kmeans", "--k", "3", "--labels", blobs / "y.npy")  # fmt: skip
    assert r["colour"] == "kmeans k=3" and r["nmi"] == pytest.approx(1.0)
    assert (blobs / "3d.png").read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory):
    """A VAE and a CNN on scikit-learn's digits, a few steps each."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("vae/digits", "cnn/digits"):
        r = load_recipe(name)
        r["train"].update({"max_steps": 4, "eval_interval": 4, "progress": False, "tensorboard": False})
        if "grid_size" in r:
            r["grid_size"] = 4
        run_task(r, run_dir=root / name.split("/")[0])
    return root


def test_run_features_vae_latents_and_cnn_features_with_digit_labels(image_runs, tmp_path, capsys):
    vae = run_json(capsys, "cluster", image_runs / "vae", "--k", "10", "--limit", "200")
    assert vae["points"] == 200 and vae["dim"] == 8 and 0 <= vae["nmi"] <= 1  # vae-digits: 8 latent dims
    assert "VAE latent means" in vae["features"] and vae["kind"] == "real"
    cnn = run_json(capsys, "project", image_runs / "cnn", "--limit", "150", "--png", tmp_path / "cnn.png")
    assert cnn["points"] == 150 and "CNN penultimate features" in cnn["features"]
    assert (tmp_path / "cnn.png").read_bytes()[:8] == PNG_MAGIC
    pix = run_json(capsys, "cluster", "digits-pca50", "--method", "gmm", "--limit", "300")
    assert pix["dim"] == 50 and pix["nmi"] > 0.3  # digits are well separated even in pixel space


def test_gpt_token_embeddings_are_features(tiny_text, tmp_path, capsys):
    run_task(tiny_recipe(tiny_text, max_steps=2), run_dir=tmp_path / "gpt")
    capsys.readouterr()
    r = run_json(capsys, "cluster", tmp_path / "gpt", "--k", "4")
    assert "token embeddings" in r["features"] and r["dim"] == 32  # gpt-micro: 32 wide
    assert sum(r["sizes"]) == r["points"] > 30  # one point per character of the vocabulary


def test_minilm_sentence_embeddings_of_a_text_file(tmp_path, capsys):
    lines = ["the cat sat on the mat", "a dog barked at the cat", "stocks fell sharply today",
             "the market rallied at noon", "kittens purr softly", "bond yields rose again"]  # fmt: skip
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "l.txt").write_text("pets\npets\nmoney\nmoney\npets\nmoney\n")
    r = run_json(capsys, "cluster", f"minilm:{tmp_path / 't.txt'}", "--k", "2", "--labels", tmp_path / "l.txt")
    assert r["points"] == 6 and r["dim"] == 384 and r["nmi"] == pytest.approx(1.0)


def test_basket_table_and_json(tmp_path, capsys):
    f = tmp_path / "shop.txt"
    f.write_text("milk,bread\nmilk,bread,butter\nbeer,chips\nbeer,chips,milk\n")
    code, out, err = genlab("basket", f, "--min-support", "0.25", "--top", "3", capsys=capsys)
    assert code == 0, err
    assert "4 baskets of 5 items" in out and "beer" in out and "2.00" in out
    r = run_json(capsys, "basket", f, "--min-support", "0.5", "--min-confidence", "0.9", "--json")
    assert r["baskets"] == 4 and r["frequent_itemsets"] == 6  # milk, bread, beer, chips, {milk, bread}, {beer, chips}
    pairs = {(tuple(t["antecedent"]), tuple(t["consequent"])): t for t in r["top"]}
    assert pairs[(("beer",), ("chips",))]["lift"] == pytest.approx(2.0)
    assert pairs[(("bread",), ("milk",))]["confidence"] == pytest.approx(1.0)


def test_bad_input_gives_one_line_errors(blobs, tmp_path, capsys):
    x = blobs / "x.npy"
    np.save(tmp_path / "big.npy", np.zeros((10_001, 2), np.float32))
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2), np.float32))
    (tmp_path / "notarun").mkdir()
    (tmp_path / "s2s").mkdir()
    (tmp_path / "s2s" / "config.yaml").write_text(yaml.safe_dump({"task": "seq2seq", "model": {"family": "seq2seq"}}))
    (tmp_path / "short.txt").write_text("a\nb\n")
    (tmp_path / "blank.txt").write_text("one\n\nthree\n")
    (tmp_path / "exists.npy").write_bytes(b"")
    cases = [
        (("cluster", "no-such-features"), "cannot read features"),
        (("cluster", tmp_path / "missing.npy"), "no file"),
        (("cluster", tmp_path / "notarun"), "not a run directory"),
        (("cluster", tmp_path / "s2s"), "is a seq2seq run"),
        (("cluster", tmp_path / "cube.npy"), "(points, dimensions)"),
        (("cluster", x, "--method", "dbscan"), "unknown clustering"),
        (("cluster", x, "--k", "61"), "at most 60"),
        (("cluster", x, "--labels", tmp_path / "short.txt"), "one label per point"),
        (("cluster", x, "--out", tmp_path / "exists.npy"), "--overwrite"),
        (("cluster", f"minilm:{tmp_path / 'blank.txt'}"), "line 2 is empty"),
        (("project", tmp_path / "big.npy", "--method", "tsne", "--out", tmp_path / "o.npy"), "at most 10,000 points"),
        (("project", x, "--method", "mds", "--out", tmp_path / "o.npy"), "unknown projection"),
        (("project", x), "nothing to write"),
        (("project", x, "--dim", "4", "--png", tmp_path / "p.png"), "2 or 3"),
        (("project", x, "--png", tmp_path / "p.jpg"), "should end in .png"),
        (("basket", tmp_path / "none.txt"), "no transactions file"),
        (("basket", blobs / "y.txt", "--min-support", "0"), "min support"),
    ]
    for args, match in cases:
        one_line_error(capsys, *args, match=match)
