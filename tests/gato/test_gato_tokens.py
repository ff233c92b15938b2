"""Gato's tokenisation: the mu-law round trip, the exact layout of one CartPole episode, the loss mask."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from genlab.core.errors import DataError
from genlab.data import gato as G
from genlab.models.gato import Gato, GatoConfig
from genlab.models.gpt import GPT, GPTConfig


def layout(**kw) -> G.TokenLayout:
    base = {"text_vocab": 10, "envs": {"CartPole-v1": [4, 2]}}
    return G.TokenLayout(**{**base, **kw})


def test_mu_law_round_trip_within_half_a_bin():
    lay = layout()
    x = np.concatenate([np.linspace(-300, 300, 2001), np.linspace(-1, 1, 2001), [0.0, 1e-6, -1e-6, 255.9]])
    # the companding alone inverts exactly
    inside = x[np.abs(x) < 256]
    np.testing.assert_allclose(G.inverse_mu_law(G.mu_law(inside)), inside, rtol=1e-9, atol=1e-12)
    ids = G.encode_values(x, lay)
    assert ids.min() >= lay.obs_offset and ids.max() < lay.obs_offset + lay.bins
    assert np.all(np.diff(G.encode_values(np.sort(x), lay)) >= 0)  # monotone
    back = G.decode_values(ids, lay)
    # after binning: the value is within half a bin (1 / bins in F-space) of the bin's centre
    y = G.mu_law(inside)
    h = 1.0 / lay.bins
    lo, hi = G.inverse_mu_law(np.maximum(y - h, -1)), G.inverse_mu_law(np.minimum(y + h, 1))
    bound = np.maximum(inside - lo, hi - inside)
    err = np.abs(back[np.abs(x) < 256] - inside)
    assert np.all(err <= bound + 1e-9)
    # near zero the bins are fine (mu-law spends them where values are small); values past M clip
    assert np.abs(G.decode_values(G.encode_values(np.array([0.01]), lay), lay)[0] - 0.01) < 2e-4
    assert G.encode_values(np.array([1e6]), lay)[0] == lay.obs_offset + lay.bins - 1
    assert G.encode_values(np.array([-1e6]), lay)[0] == lay.obs_offset


def test_mu_law_matches_the_paper_formula():
    mu, M = 100.0, 256.0
    for x in (0.5, -2.0, 7.0):
        expected = math.copysign(math.log(abs(x) * mu + 1) / math.log(M * mu + 1), x)
        assert G.mu_law(np.array([x]))[0] == pytest.approx(expected)


def test_the_token_layout_of_a_two_step_cartpole_episode():
    lay = layout()
    # text 0..9, values 10..1033, '|' 1034, image slot 1035, CartPole actions 1036 (left) and 1037 (right)
    assert (lay.obs_offset, lay.sep_id, lay.image_id, lay.action_offset("CartPole-v1")) == (10, 1034, 1035, 1036)
    assert lay.vocab_size == 1038
    obs = np.array([[0.0, 1.6, -1.6, 300.0], [-300.0, 0.0, 1.6, -1.6]], dtype=np.float32)
    actions = np.array([1, 0])
    ids = G.episode_tokens(obs, actions, lay, "CartPole-v1")
    # F(0) = 0 -> bin 512; F(1.6) = ln 161 / ln 25601 = 0.5006 -> bin 768; F(-1.6) -> bin 255; |x| > M clips
    expected = [522, 778, 265, 1033, 1034, 1037,
                10, 522, 778, 265, 1034, 1036]  # fmt: skip
    assert ids.tolist() == expected
    # the loss is on the two actions only: predicted at each separator
    t = G.targets(ids, lay)
    assert [(i, int(v)) for i, v in enumerate(t) if v != G.IGNORE] == [(4, 1037), (10, 1036)]
    text = G.render_layout(ids, lay)
    assert text.splitlines()[:3] == ["obs    [522, 778, 265, 1033] ~ [9.96e-05, 1.61, -1.61, 253]", "|      [1034]",
                                     "act    [1037] CartPole-v1:1"]  # fmt: skip
    assert len(text.splitlines()) == 6


def test_observation_tokens_are_an_episode_step_without_its_action():
    lay = layout()
    obs = np.array([[0.1, -0.2, 0.03, 4.0]], dtype=np.float32)
    step = G.episode_tokens(obs, np.array([0]), lay, "CartPole-v1")
    assert G.observation_tokens(obs, lay)[0].tolist() == step[:-1].tolist()


def test_the_loss_mask_covers_text_and_action_positions_only():
    lay = layout(text_vocab=50)
    image = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    row, patches = G.image_text_example(image, [3, 4, 5], [7, 8, 0], lay)
    episode = G.episode_tokens(np.zeros((3, 4)), np.array([0, 1, 1]), lay, "CartPole-v1")
    batch = G.collate([(row, patches), (np.concatenate([[1, 2]], dtype=np.int64), patches)], lay, pad_id=0)
    ids, tgt = batch["ids"].numpy(), batch["targets"].numpy()
    n = lay.n_patches
    # image row: the slots and the last slot predict nothing but the first text token; text predicts text
    assert (tgt[0, : n - 1] == G.IGNORE).all() and tgt[0, n - 1] == 3
    assert tgt[0, n : n + 5].tolist() == [4, 5, 7, 8, 0] and tgt[0, -1] == G.IGNORE
    assert (tgt[1, 1:] == G.IGNORE).all() and ids[1, 2:].tolist() == [0] * (len(row) - 2)  # padding is ignored
    assert batch["patches"].shape == (2, n, lay.patch_dim)
    t = G.targets(episode, lay)
    kinds = [("act" if lay.is_action(np.array([v]))[0] else "text") for v in t[t != G.IGNORE]]
    assert kinds == ["act"] * 3 and not (t[(episode >= lay.obs_offset) & (episode < lay.sep_id)] != G.IGNORE).all()
    assert set(np.flatnonzero(t != G.IGNORE)) == {4, 10, 16}  # the separators: observation positions never


def test_image_patches_fit_the_size_and_scale_like_the_paper():
    lay = layout()  # 32 x 32, patches of 8
    p = G.image_patches(np.full((28, 28), 255, np.uint8), lay)  # Fashion-MNIST: zero-padded by 2
    assert p.shape == (16, 3 * 64) and p.max() == pytest.approx(1 / math.sqrt(8))
    assert p.min() == pytest.approx(-1 / math.sqrt(8))  # the padding is black
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:8, :8, 0] = 255  # the top-left 8 x 8 red corner averages into a 4 x 4 one in patch 0
    q = G.image_patches(rgb, lay).reshape(16, 3, 8, 8)
    assert q[0, 0, :4, :4].max() == pytest.approx(1 / math.sqrt(8)) and q[0, 0, 4:, 4:].max() < 0 and q[1:].max() < 0
    with pytest.raises(DataError, match="does not fit"):
        G.image_patches(np.zeros((40, 40), np.uint8), lay)


def test_a_modality_the_run_was_not_trained_on_is_a_one_line_error():
    lay = layout(images=False)
    with pytest.raises(DataError, match=r"not trained on image inputs; it knows: text, CartPole-v1$"):
        lay.check_modality("image")
    with pytest.raises(DataError, match=r"no action tokens for 'Acrobot-v1'; it knows: text, CartPole-v1$"):
        G.episode_tokens(np.zeros((1, 6)), np.zeros(1), lay, "Acrobot-v1")
    lay.check_modality("text")
    lay.check_modality("CartPole-v1")


def tiny_gato(image_id=1035, vocab=1038) -> Gato:
    gpt = GPTConfig(vocab_size=vocab, block_size=64, n_layer=2, n_head=2, n_embd=32)
    return Gato(GatoConfig(gpt=gpt, image_id=image_id, n_patches=16, patch_dim=192)).eval()


def test_gpt_inputs_embeds_is_the_token_embedding_path():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(gpt(ids, inputs_embeds=gpt.tok_emb(ids)), gpt(ids), rtol=0, atol=0)


def test_gato_puts_each_rows_patches_into_its_image_slots():
    torch.manual_seed(0)
    lay = layout()
    model = tiny_gato()
    patches = torch.randn(2, 16, 192)
    ids = torch.tensor([[lay.image_id] * 16 + [3, 4], [lay.image_id] * 16 + [5, 6]])
    x = model.embed(ids, patches)
    ref = model.patch(patches) + model.patch_pos.weight  # (B, N, C)
    torch.testing.assert_close(x[:, :16], ref)
    torch.testing.assert_close(x[:, 16:], model.gpt.tok_emb(ids[:, 16:]))
    assert list(model.state_dict())[:2] == ["gpt.tok_emb.weight", "gpt.pos_emb.weight"]
    # the engine's cached path (prefill the image prompt, then one token at a time) equals the full forward
    from genlab.generation.decode import GenerationConfig, generate

    cfg = GenerationConfig(max_new_tokens=5, temperature=0.0, use_cache=True)
    cached = generate(model.with_patches(patches), ids.tolist(), cfg)
    plain = generate(model.with_patches(patches), ids.tolist(), dataclasses.replace(cfg, use_cache=False))
    assert [g[0].tokens for g in cached] == [g[0].tokens for g in plain]
    with pytest.raises(Exception, match="image slots need patches"):
        model(ids)


def test_value_bins_start_ordinal_on_request():
    torch.manual_seed(0)
    gpt = GPTConfig(vocab_size=1038, block_size=64, n_layer=1, n_head=2, n_embd=32)
    kw = {"gpt": gpt, "image_id": 1035, "value_offset": 10, "value_bins": 1024}
    plain, ordinal = Gato(GatoConfig(**kw)), Gato(GatoConfig(**kw, value_init="ordinal"))
    e = ordinal.gpt.tok_emb.weight[10:1034].detach()
    assert e.std().item() == pytest.approx(0.02, rel=0.1)
    near = (e[1:] - e[:-1]).norm(dim=1).mean()
    far = (e[512:] - e[:512]).norm(dim=1).mean()
    assert near < far / 4  # neighbouring values start close
    p = plain.gpt.tok_emb.weight[10:1034].detach()
    assert (p[1:] - p[:-1]).norm(dim=1).mean() > far / 2  # normal: every bin on its own
    with pytest.raises(Exception, match="value_init='sorted'"):
        GatoConfig(**kw, value_init="sorted")
