"""Show & Tell and Show, Attend and Tell: the paths agree, and decoding through the engine equals a
plain step-by-step loop written from the LSTM equations."""

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.generation.decode import GenerationConfig, generate
from genlab.models import build_model
from genlab.models.showtell import ImageEncoder, ImageEncoderConfig, LSTMCache, ShowTell, ShowTellConfig

EOS, START = 3, 2


def tiny(decoder="showtell", kind="cnn", n_layer=1, channels=1) -> ShowTell:
    torch.manual_seed(0)
    image = ImageEncoderConfig(kind=kind, in_channels=channels, image_size=16, widths=[8, 12], patch_size=4,
                               n_layer=1, n_head=2, n_embd=12)  # fmt: skip
    cfg = ShowTellConfig(vocab_size=23, block_size=12, decoder_start_id=START, eos_id=EOS, image=image,
                         decoder=decoder, n_embd=10, n_hidden=14, n_layer=n_layer, attn_dim=6, dropout=0.0)  # fmt: skip
    model = ShowTell(cfg).eval()
    with torch.no_grad():  # larger weights: untrained captions that differ between images
        model.head.weight.mul_(8)
        for p in model.encoder.parameters():
            if p.dim() == 4:  # conv filters: features of order 1 rather than 0.01
                p.mul_(3)
    return model


def images(n=3, channels=1) -> torch.Tensor:
    """Noise over a different brightness per image (n, C, 16, 16) in [0, 1]."""
    noise = torch.rand(n, channels, 16, 16, generator=torch.Generator().manual_seed(1))
    return 0.3 * noise + 0.7 * torch.linspace(0, 1, n)[:, None, None, None]


def lstm_cell(model, x, h, c):
    """One step of nn.LSTM's layer 0 from its weights: i, f, g, o = W_ih x + b_ih + W_hh h + b_hh."""
    lstm = model.lstm
    gates = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


@torch.no_grad()
def reference_greedy(model, image: torch.Tensor, max_new: int) -> list[int]:
    """Greedy decoding of one image, one token at a time from the equations of the module docstring."""
    a = model.encode(image[None])  # (1, N, F)
    H = model.config.n_hidden
    if model.config.decoder == "showtell":
        h, c = lstm_cell(model, model.img_proj(a.mean(1)), torch.zeros(1, H), torch.zeros(1, H))  # x_{-1}
    else:
        h, c = torch.tanh(model.init_h(a.mean(1))), torch.tanh(model.init_c(a.mean(1)))
    token, out = START, []
    for _ in range(max_new):
        x = model.embed(torch.tensor([token]))  # (1, E)
        if model.config.decoder == "showtell":
            h, c = lstm_cell(model, x, h, c)
            logits = model.head(h)
        else:
            alpha = torch.softmax(model.att_score(torch.tanh(model.att_feat(a) + model.att_hid(h)[:, None])), dim=1)
            z = torch.sigmoid(model.gate(h)) * (alpha * a).sum(1)  # (1, F)
            h, c = lstm_cell(model, torch.cat([x, z], -1), h, c)
            logits = model.head(x + model.out_h(h) + model.out_z(z))
        token = int(logits.argmax(-1))
        if token == EOS:
            break
        out.append(token)
    return out


@pytest.mark.parametrize("decoder", ["showtell", "attend"])
def test_greedy_through_the_engine_equals_the_step_by_step_reference(decoder):
    model, x = tiny(decoder), images()
    gen = GenerationConfig(max_new_tokens=11, temperature=0.0, eos_id=EOS)
    got = [g[0].tokens for g in generate(model, list(x), gen)]
    want = [reference_greedy(model, im, 11) for im in x]
    assert got == want
    assert len({tuple(t) for t in want}) > 1  # the images get different captions: the image matters
    beam1 = generate(model, list(x), GenerationConfig(max_new_tokens=11, num_beams=1, temperature=0.0, eos_id=EOS))
    assert [g[0].tokens for g in beam1] == want


@pytest.mark.parametrize("decoder", ["showtell", "attend"])
def test_beam_search_with_the_lstm_cache_equals_recomputing(decoder):
    model, x = tiny(decoder, n_layer=2), images(4)
    beam = GenerationConfig(max_new_tokens=8, num_beams=4, eos_id=EOS, num_return_sequences=2)
    cached = generate(model, list(x), beam)
    plain = generate(model, list(x), GenerationConfig(**{**beam.__dict__, "use_cache": False}))
    assert [[g.tokens for g in gs] for gs in cached] == [[g.tokens for g in gs] for gs in plain]
    flat = lambda out: [g.score for gs in out for g in gs]
    assert flat(cached) == pytest.approx(flat(plain))
    alone = generate(model, [x[2]], beam)  # a batch decodes each image as it would alone
    assert [g.tokens for g in alone[0]] == [g.tokens for g in cached[2]]


@pytest.mark.parametrize(
    "decoder,kind", [("showtell", "cnn"), ("attend", "cnn"), ("showtell", "vit"), ("attend", "vit")]
)
def test_teacher_forcing_equals_decoding_with_and_without_the_cache(decoder, kind):
    model, x = tiny(decoder, kind, n_layer=2), images()
    ids = torch.randint(4, 23, (3, 7))
    ids[:, 0] = START
    with torch.no_grad():
        full = model(x, ids)
        memory = model.encode(x)
        recomputed = model.decode(ids, memory)
        cache = model.make_cache()
        stepped = torch.cat([model.decode(ids[:, t : t + 1], memory if t == 0 else None, cache=cache)
                             for t in range(7)], dim=1)  # fmt: skip
    assert full.logits.shape == (3, 7, 23)
    torch.testing.assert_close(recomputed, full.logits)
    torch.testing.assert_close(stepped, full.logits, atol=1e-5, rtol=1e-5)
    assert cache.length == 7
    if decoder == "attend":
        assert full.alphas.shape == (3, 7, memory.size(1))
        torch.testing.assert_close(full.alphas.sum(-1), torch.ones(3, 7))


def test_the_cache_copies_and_reorders_rows():
    model, x = tiny("attend"), images(2)
    cache = model.make_cache()
    with torch.no_grad():
        model.decode(torch.full((2, 1), START), model.encode(x), cache=cache)
    h = cache.h.clone()
    cache.repeat_rows(3)
    assert cache.h.shape[1] == 6 and torch.equal(cache.h[:, 3], h[:, 1]) and cache.cross["memory"].size(0) == 6
    cache.reorder(torch.tensor([5, 0, 0, 1, 2, 3]), cross=False)
    assert torch.equal(cache.h[:, 0], h[:, 1]) and cache.cross["memory"].size(0) == 6
    cache.reset()
    assert cache.length == 0 and cache.h is None and cache.cross == {}
    assert isinstance(cache, LSTMCache)


def test_an_image_of_the_wrong_channel_count_is_a_one_line_error():
    model = tiny(channels=3)
    with pytest.raises(ConfigError, match="the image has 1 channel but this model takes 3 channels") as err:
        model.encode(images(2, channels=1))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="4 channels but this model takes 3"):
        generate(model, list(images(2, channels=4)), GenerationConfig(max_new_tokens=3, temperature=0.0))
    with pytest.raises(ConfigError, match="3 channels but this model takes 1 channel"):
        ImageEncoder(ImageEncoderConfig(in_channels=1, image_size=16, widths=[8]))(images(1, channels=3))


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="decoder='gru'"):
        ShowTellConfig(decoder="gru")
    with pytest.raises(ConfigError, match="kind='resnet50'"):
        ImageEncoderConfig(kind="resnet50")
    with pytest.raises(ConfigError, match="patch_size"):
        ImageEncoderConfig(kind="vit", image_size=30, patch_size=8)
    with pytest.raises(ConfigError, match="exceeds the decoder's context"):
        generate(tiny(), list(images(1)), GenerationConfig(max_new_tokens=20, temperature=0.0))


def test_registered_presets_build_and_the_features_are_pooled():
    from genlab.core.registry import preset

    for name in ("showtell-tuxpaint", "showattend-scenes", "showtell-vit-scenes"):
        cfg = preset(name)
        model = build_model(cfg).eval()
        x = torch.rand(2, cfg.image.in_channels, cfg.image.image_size, cfg.image.image_size)
        assert model.image_features(x).shape == (2, cfg.image.width)
        assert model.encode(x).shape == (2, 64, cfg.image.width)  # an 8 x 8 grid of locations
