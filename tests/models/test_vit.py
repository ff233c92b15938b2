"""ViT and the CNN + Transformer hybrid: shapes, positions, attention maps, Hugging Face parity."""

import dataclasses
import os

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.models.convert import vit as convert
from genlab.models.vit import (
    PatchEmbedding,
    ShiftedPatchEmbedding,
    ViT,
    ViTConfig,
    attention_weights,
    interpolate_positions,
    sincos_2d,
)

os.environ["HF_HUB_OFFLINE"] = "1"

TINY = ViTConfig(image_size=8, patch_size=4, in_channels=1, n_classes=3, n_layer=2, n_head=2, n_embd=16)


def test_patch_embedding_is_a_linear_map_of_each_flattened_patch():
    torch.manual_seed(0)
    pe = PatchEmbedding(3, 4, 10)
    x = torch.randn(2, 3, 12, 12)
    out = pe(x)
    assert out.shape == (2, 9, 10)  # a 3 x 3 grid of 4 x 4 patches
    patch = x[:, :, 4:8, 8:12].reshape(2, -1)  # row 1, column 2 -> token 1 * 3 + 2
    ref = patch @ pe.proj.weight.reshape(10, -1).T + pe.proj.bias
    torch.testing.assert_close(out[:, 5], ref, rtol=1e-5, atol=1e-5)


def test_image_size_not_divisible_by_patch_is_a_one_line_error():
    with pytest.raises(ConfigError, match="image size 30 is not divisible by patch_size=4") as e:
        ViTConfig(image_size=30, patch_size=4)
    assert "\n" not in str(e.value)
    model = ViT(TINY)
    with pytest.raises(ConfigError, match="image size 10 is not divisible by patch_size=4"):
        model(torch.rand(1, 1, 10, 10))
    with pytest.raises(ConfigError, match="feature map"):
        ViTConfig(image_size=28, patch_size=2, stem="vgg", stem_widths=[8, 8])  # 7 x 7 map


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_another_image_size_runs_with_interpolated_or_computed_positions(pool, pos):
    model = ViT(dataclasses.replace(TINY, pool=pool, pos=pos)).eval()
    out = model(torch.rand(2, 1, 16, 16), attentions=True)
    assert out.logits.shape == (2, 3) and out.grid == 4
    assert out.attentions[0].shape == (2, 2, 16 + (pool == "cls"), 16 + (pool == "cls"))


def test_position_interpolation_keeps_the_class_row_and_the_table_at_its_own_size():
    table = torch.randn(1, 1 + 4, 6)
    assert interpolate_positions(table, 2, 1) is table
    up = interpolate_positions(table, 4, 1)
    assert up.shape == (1, 17, 6)
    torch.testing.assert_close(up[:, 0], table[:, 0])
    const = torch.ones(1, 1 + 9, 6)  # a constant grid stays constant
    torch.testing.assert_close(interpolate_positions(const, 5, 1), torch.ones(1, 26, 6))
    sc = sincos_2d(3, 8)
    assert sc.shape == (9, 8)
    torch.testing.assert_close(sc[1, :4], sc[2, :4])  # (0, 1) and (0, 2): same row, same first half
    torch.testing.assert_close(sc[1, 4:], sc[4, 4:])  # (0, 1) and (1, 1): same column, same second half
    assert not torch.allclose(sc[1, 4:], sc[2, 4:])


def test_attention_maps_are_the_eager_weights_and_forward_matches_the_eager_backend():
    torch.manual_seed(0)
    model = ViT(TINY).eval()
    eager = ViT(dataclasses.replace(TINY, attention="eager")).eval()
    eager.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 8, 8)
    out = model(x, attentions=True, hidden_states=True)
    torch.testing.assert_close(eager(x), out.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(x), out.logits)
    for a in out.attentions:
        assert a.shape == (3, 2, 5, 5)
        torch.testing.assert_close(a.sum(-1), torch.ones(3, 2, 5))
    # the first block's output recomputed from its attention weights
    block = model.blocks[0]
    h, _ = model.embed(x)
    w = attention_weights(block.attn, block.ln1(h))  # (B, H, T, T)
    v = block.attn.qkv(block.ln1(h))[..., 32:].view(3, 5, 2, 8).transpose(1, 2)  # (B, H, T, D)
    y = block.attn.proj((w @ v).transpose(1, 2).reshape(3, 5, 16))
    h1 = h + y
    torch.testing.assert_close(h1 + block.mlp(block.ln2(h1)), out.hidden_states[0], rtol=1e-5, atol=1e-5)


def test_hybrid_tokens_are_the_stem_feature_map():
    cfg = preset("hybrid-fashion")
    model = ViT(cfg).eval()
    assert cfg.grid == 3 and cfg.n_tokens == 9 and cfg.arch == "hybrid-vgg"
    x = torch.rand(2, 1, 28, 28)
    fmap = model.stem(x)
    assert fmap.shape == (2, 64, 3, 3)  # 28 -> 14 -> 7 -> 3 (each VGG stage max-pools by 2)
    out = model(x, attentions=True)
    assert out.attentions[0].shape == (2, cfg.n_head, 9, 9)
    resnet = ViT(dataclasses.replace(cfg, stem="resnet", stem_widths=[8, 16], patch_size=7))
    assert resnet(x).shape == (2, 10)


def test_shifted_patch_tokens_hold_the_patch_and_its_half_patch_diagonal_neighbours():
    torch.manual_seed(0)
    spt = ShiftedPatchEmbedding(1, 4, 6)
    x = torch.randn(2, 1, 8, 8)
    tokens = spt(x)
    assert tokens.shape == (2, 4, 6)  # a 2 x 2 grid
    # token 3 is patch (1, 1), rows and columns 4..7; each shifted copy reads the window moved by 2 pixels
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))  # image pixel (r, c) is padded[r + 2, c + 2]
    views = [x[:, 0, 4:8, 4:8]] + [padded[:, 0, 4 + 2 + dy : 8 + 2 + dy, 4 + 2 + dx : 8 + 2 + dx]
                                   for dy in (-2, 2) for dx in (-2, 2)]  # fmt: skip
    flat = torch.cat([v.reshape(2, -1) for v in views], dim=1)  # (B, 5 * 16) in unfold's channel-major order
    torch.testing.assert_close(tokens[:, 3], spt.proj(spt.norm(flat)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="not divisible into 4x4 patches"):
        spt(torch.randn(1, 1, 10, 10))
    with pytest.raises(ConfigError, match="spt shifts image patches"):
        ViTConfig(image_size=28, patch_size=1, stem="vgg", stem_widths=[8, 8, 8], spt=True)


def test_locality_self_attention_masks_the_diagonal_and_matches_its_eager_weights():
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, spt=True, lsa=True)
    model = ViT(cfg).eval()
    eager = ViT(dataclasses.replace(cfg, attention="eager")).eval()
    eager.load_state_dict(model.state_dict())
    block = model.blocks[0]
    assert block.temperature.item() == pytest.approx(8**0.5)  # sqrt(D), D = 16 / 2
    with torch.no_grad():
        block.temperature.fill_(1.7)
        eager.blocks[0].temperature.fill_(1.7)
    x = torch.rand(3, 1, 8, 8)
    out = model(x, attentions=True, hidden_states=True)
    torch.testing.assert_close(eager(x), out.logits, rtol=1e-5, atol=1e-5)
    w = out.attentions[0]  # (B, H, T, T)
    assert torch.all(w.diagonal(dim1=-2, dim2=-1) == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 5))
    # the block's output recomputed from the weights: softmax(mask_diag(Q K^T) / tau) V
    h, _ = model.embed(x)
    v = block.attn.qkv(block.ln1(h))[..., 32:].view(3, 5, 2, 8).transpose(1, 2)  # (B, H, T, D)
    h1 = h + block.attn.proj((w @ v).transpose(1, 2).reshape(3, 5, 16))
    torch.testing.assert_close(h1 + block.mlp(block.ln2(h1)), out.hidden_states[0], rtol=1e-5, atol=1e-5)
    # the temperature is learned: the loss has a gradient with respect to it
    model.train()
    model(x).sum().backward()
    assert block.temperature.grad is not None and block.temperature.grad.abs() > 0
    with pytest.raises(ConfigError, match="spt=True, lsa=True"):
        convert.genlab_config_to_hf(cfg)


def test_channels_last_stem_gives_the_same_logits_and_saves_contiguous():
    from genlab.training.checkpoint import model_tensors

    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("hybrid-fashion"), n_layer=1)
    plain = ViT(dataclasses.replace(cfg, channels_last=False)).eval()
    fast = ViT(dataclasses.replace(cfg, channels_last=True)).eval()
    fast.load_state_dict(plain.state_dict())
    conv = [m for m in fast.stem.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # (64, 64, 3, 3)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    assert all(t.is_contiguous() for t in model_tensors(fast).values())


def test_published_sizes_count_exactly_like_transformers():
    transformers = pytest.importorskip("transformers")
    sizes = {"vit-ti-16": (192, 3), "vit-s-16": (384, 6), "vit-b-16": (768, 12)}
    for name, (d, h) in sizes.items():
        with torch.device("meta"):
            ours = sum(p.numel() for p in ViT(preset(name)).parameters())
            hf_cfg = transformers.ViTConfig(hidden_size=d, num_attention_heads=h, intermediate_size=4 * d,
                                            num_labels=1000)  # fmt: skip
            theirs = sum(p.numel() for p in transformers.ViTForImageClassification(hf_cfg).parameters())
        assert ours == theirs, name


def hf_tiny(transformers):
    cfg = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # not the zero/one init: every weight matters
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_hugging_face_vit_to_genlab_logits_match(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = hf_tiny(transformers)
    hf.save_pretrained(tmp_path / "hf")
    ours = convert.load_hf_vit(tmp_path / "hf")
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x).logits, rtol=0, atol=1e-4)


def test_genlab_vit_to_hugging_face_logits_match(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    ours = ViT(TINY).eval()
    convert.save_hf_vit(ours, tmp_path / "out")
    hf = transformers.ViTForImageClassification.from_pretrained(tmp_path / "out").eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=x).logits, ours(x), rtol=0, atol=1e-4)
    back = convert.load_hf_vit(tmp_path / "out")
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_configs_hugging_face_cannot_hold_are_one_line_errors():
    with pytest.raises(ConfigError, match="pool=mean"):
        convert.genlab_config_to_hf(preset("vit-fashion"))
    with pytest.raises(ConfigError, match="this is a bert checkpoint"):
        convert.hf_config_to_genlab({"model_type": "bert"})
