"""genlab studio without a browser: what each page computes, its one-line errors, the eager attention
capture against SDPA, the handlers' messages, and the mount on the serving app."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from studio_runs import image_recipe

from genlab.core.errors import ConfigError, DataError, RunDirError
from genlab.core.registry import preset
from genlab.layers.attention import attention_weights, causal_mask, repeat_kv, sdpa_attention
from genlab.models import build_model
from genlab.recipes import run_task
from genlab.studio import catalog, projector, text, views, vision
from genlab.tokenizers import CharTokenizer

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ,.:\n")
    cfg = preset("gpt-micro")
    cfg.vocab_size = tok.vocab_size
    return build_model(cfg).eval(), tok


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run_task(image_recipe("cnn/digits"), run_dir=root / "cnn")
    run_task(image_recipe("vae/digits"), run_dir=root / "deep" / "vae")
    return root


# --- attention: the eager weights against SDPA -----------------------------------------------


def test_attention_weights_times_values_equal_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)  # GQA: 2 kv heads
    mask = torch.rand(2, 1, 5, 7) > 0.3
    bias = torch.randn(1, 4, 5, 7)
    w = attention_weights(q, k, mask, True, bias)  # (B, H, T, S)
    ref = sdpa_attention(q, k, v, mask=mask, is_causal=True, bias=bias)
    assert torch.allclose(w @ repeat_kv(v, 4), ref, atol=1e-5)
    allowed = mask & causal_mask(5, 7)
    rows = allowed.any(-1).expand(2, 4, 5)  # (B, H, T)
    assert torch.allclose(w.sum(-1)[rows], torch.ones(int(rows.sum())), atol=1e-5)
    assert (w[~allowed.expand(2, 4, 5, 7)] == 0).all()


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_capture_attention_keeps_the_gpt_output(pos):
    torch.manual_seed(0)
    cfg = preset("gpt-micro")
    cfg.pos = pos
    model = build_model(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (1, 9))
    with torch.no_grad():
        ref = model(x)
        with text.capture_attention(model) as maps:
            got = model(x)
    assert torch.allclose(got, ref, atol=1e-5)  # weights @ V is the SDPA output
    assert len(maps) == cfg.n_layer and maps[0].shape == (1, cfg.n_head, 9, 9)
    assert torch.all(maps[0][0].triu(1) == 0)  # causal
    assert all(m.attend.__name__ == "sdpa_attention" for m in text.attention_modules(model))  # restored


def test_attention_view_limits():
    cfg = preset("gpt-micro")
    cfg.block_size, cfg.attention, cfg.attention_window = 128, "longformer", 4
    tok = CharTokenizer.train("ab")
    cfg.vocab_size = tok.vocab_size
    with pytest.raises(ConfigError, match="this model uses longformer attention"):
        text.attention_maps(build_model(cfg).eval(), tok, "gpt", "abab")
    cfg.attention = "eager"
    with pytest.raises(ConfigError, match="the text is 100 tokens; the attention view shows at most 96"):
        text.attention_maps(build_model(cfg).eval(), tok, "gpt", "ab" * 50)


def test_bert_attention_maps_are_bidirectional():
    from genlab.tokenizers import WordPieceTokenizer

    torch.manual_seed(0)
    tok = WordPieceTokenizer.train(["the cat sat on a mat"] * 20, vocab_size=60)
    cfg = preset("bert-micro")
    cfg.vocab_size = tok.vocab_size
    model = build_model(cfg).eval()
    tokens, w = text.attention_maps(model, tok, "bert", "the cat sat")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert w.shape == (cfg.n_layer, cfg.n_head, len(tokens), len(tokens))
    assert (w[0, 0].triu(1) > 0).any()  # sees the future: not causal
    with pytest.raises(ConfigError, match="needs a gpt or bert run; this is a vae run"):
        text.attention_maps(model, tok, "vae", "x")


# --- text ---------------------------------------------------------------------------------


def test_token_probabilities_are_the_model_softmax(gpt):
    model, tok = gpt
    ids = tok.encode("to be or")
    infos = text.token_probabilities(model, tok, ids, n_prompt=3, k=4)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids]))[0], -1)
    assert infos[0].prob is None and not infos[0].generated and infos[3].generated
    for t in range(1, len(ids)):
        assert infos[t].prob == pytest.approx(float(probs[t - 1, ids[t]]), rel=1e-5)
        p = probs[t - 1]
        assert infos[t].entropy == pytest.approx(float(-(p * p.log()).sum()), rel=1e-4)
        assert len(infos[t].alternatives) == 4 and infos[t].alternatives[0][1] == pytest.approx(float(p.max()))


def test_temperature_panels(gpt):
    model, tok = gpt
    s = text.sampling(top_k=5)
    panels = text.next_token_distributions(model, tok, "to be", [0.0, 0.5, 1.0, 2.0], s)
    assert panels[0]["top"][0][1] == pytest.approx(1.0) and panels[0]["entropy"] == pytest.approx(0.0, abs=1e-6)
    entropies = [p["entropy"] for p in panels]
    assert entropies == sorted(entropies)  # hotter is flatter
    assert sum(p > 0 for _, p in panels[3]["top"]) == 5  # top-k keeps 5 tokens
    assert "(your setting)" in views.distributions_html(panels, 0.5)


def test_complete_and_the_prompt_errors(gpt):
    model, tok = gpt
    ids, n = text.complete(model, tok, "abc", text.sampling(max_new_tokens=5, seed=1))
    again, _ = text.complete(model, tok, "abc", text.sampling(max_new_tokens=5, seed=1))
    assert n == 3 and len(ids) == 8 and ids == again  # the seed fixes the sample
    with pytest.raises(ConfigError, match="the prompt is empty"):
        text.complete(model, tok, "  ", text.sampling())
    with pytest.raises(ConfigError, match="temperature must be >= 0"):
        text.complete(model, tok, "abc", text.sampling(temperature=-1))
    html = views.tokens_html(text.token_probabilities(model, tok, ids, n))
    assert html.count('class="tok gen"') == 5 and html.count('class="tok prompt"') == 3


# --- runs ---------------------------------------------------------------------------------


def test_find_runs_nested_and_empty(runs, tmp_path):
    assert catalog.find_runs(runs) == ["cnn", "deep/vae"]
    assert catalog.find_runs(runs / "cnn") == ["."]
    with pytest.raises(RunDirError, match="no genlab runs under"):
        catalog.find_runs(tmp_path)
    with pytest.raises(RunDirError, match="is not a folder"):
        catalog.find_runs(tmp_path / "missing")


def test_curves_skip_bookkeeping_and_broken_lines(runs, tmp_path):
    c = catalog.curves(runs / "cnn")
    assert c["train_loss"][0] == [1, 2] and c["val_loss"][0] == [1, 2] and "lr" not in c
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train_loss": 2.0}\n{"step": 2, "train_lo\n')
    assert catalog.curves(tmp_path) == {"train_loss": ([1], [2.0])}
    assert catalog.loaded(runs / "cnn") is catalog.loaded(runs / "cnn")  # cached
    fig = views.curves_figure({"a": c, "b": c})
    assert len(fig.data) == 4


# --- images and CNN -----------------------------------------------------------------------


def test_vae_decode_interpolate_reconstruct(runs):
    vae = catalog.loaded(runs / "deep" / "vae").model
    a, b = vision.decode_latent(vae, [0.0]), vision.decode_latent(vae, [3.0, -3.0])
    assert a.shape == (8, 8) and a.dtype == np.uint8 and not np.array_equal(a, b)
    strip = vision.interpolation(vae, "digits", 0, 1, steps=4)
    assert strip.shape == (8, 6 * 9 - 1)  # A, 4 steps, B with 1-pixel gaps
    assert vision.reconstructions(vae, "digits", 3).shape == (17, 26)
    with pytest.raises(ConfigError, match="test image 9999 does not exist"):
        vision.interpolation(vae, "digits", 0, 9999)
    with pytest.raises(ConfigError, match="trained on every class"):
        vision.anomaly_scores(vae, {"data": {}}, "digits")
    held, scores = vision.anomaly_scores(vae, {"data": {"exclude_class": 3}}, "digits", limit=100)
    assert held == 3 and sum(len(s) for s in scores.values()) == 100


def test_cnn_feature_maps_and_uploads(runs):
    cnn = catalog.loaded(runs / "cnn").model
    maps = vision.feature_maps(cnn, np.zeros((8, 8), np.uint8))
    assert maps["stage0"].shape[0] == 16 and maps["stage1"].shape[0] == 32 and maps["probs"].sum() == pytest.approx(1)
    html = views.maps_html("stage1", maps["stage1"])
    assert html.count('class="fmap"') == 32
    assert len(views.layers_3d(maps, np.zeros((8, 8), np.uint8)).data) == 1
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(buf, format="PNG")
    assert vision.read_upload(buf.getvalue(), 8).shape == (8, 8)
    with pytest.raises(DataError, match="is not an image"):
        vision.read_upload(b"hello, not a picture", 8)


# --- projector ----------------------------------------------------------------------------


def test_projector_points_and_limits(runs, gpt):
    pts = projector.run_points(str(runs / "cnn"), 50)
    assert pts.x.shape == (50, 64) and len(pts.labels) == 50 and "CNN features" in pts.what
    vae = projector.run_points(str(runs / "deep" / "vae"), 30)
    assert vae.x.shape == (30, vae.x.shape[1]) and vae.labels is not None
    with pytest.raises(ConfigError, match="tsne takes at most 10,000 points; asked for 10,001"):
        projector.check_count(10_001, "tsne")
    projector.check_count(10_000, "tsne")
    buf = io.BytesIO()
    np.savez(buf, latents=np.ones((5, 3)), labels=np.arange(5))
    z = projector.npz_points(buf.getvalue(), 4)
    assert z.x.shape == (4, 3) and z.labels.tolist() == [0, 1, 2, 3]
    texts, labels = projector.read_lines(b"a\tone\nb\ttwo\n\n", 10)
    assert texts == ["one", "two"] and labels == ["a", "b"]
    with pytest.raises(DataError, match="not UTF-8"):
        projector.read_lines(b"\xff\xfe\x00", 3)
    fig = views.scatter_figure(np.zeros((7, 3)), [str(i) for i in range(7)], None, "cluster", selected=2)
    assert len(fig.data[0].x) == 7 and len(fig.data) == 2


# --- the app's handlers and the mount -------------------------------------------------------


def test_handlers_answer_with_messages(runs, tmp_path):
    from genlab.studio.app import Studio

    s = Studio(runs)
    msg, rows, *_ = s.scan()
    assert msg.startswith("2 runs under") and [r[0] for r in rows] == ["cnn", "deep/vae"]
    assert Studio(tmp_path).scan()[0].startswith("**No runs to show:** no genlab runs under")
    controls = (1.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, 0, 10)
    out = s.generate("cnn", "hello", *controls)
    assert "needs a gpt run; this is a cnn run" in out[0] and len(out) == 6
    assert "pick a run first" in s.attention(None, "x")[0]
    assert "outside" in s.distributions("../..", "x", *controls)[0]
    out = s.project("deep/vae", None, 40, "pca", 2, "labels", "kmeans", 3)
    assert out[0] == "" and "NMI" in out[2] and len(out[1].data[0].x) == 40
    again = s.project("deep/vae", None, 40, "pca", 2, "clusters", "gmm", 3)
    assert len(s.projections) == 1 and np.array_equal(again[3]["coords"], out[3]["coords"])  # cached
    near = s.search(out[3], "5", 4)
    assert near[1].count('class="nb"') == 4
    assert "at most 10,000 points" in s.project("deep/vae", None, 20_000, "tsne", 2, "labels", "kmeans", 3)[0]


def test_mounted_on_the_serving_app(runs):
    from fastapi.testclient import TestClient

    from genlab.serving.app import create_app
    from genlab.studio.app import mount

    app = create_app({}, mount=lambda a: mount(a, runs))
    with TestClient(app) as client:
        page = client.get("/studio/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/favicon.ico").status_code == 204  # the browser asks the root for it
        config = client.get("/studio/config")
        assert config.status_code == 200 and json.loads(config.text)["components"]
