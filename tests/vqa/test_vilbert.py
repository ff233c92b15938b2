"""ViLBERT-style co-attention: shapes, masks (text padding changes nothing; image queries never read
text pads), eager == SDPA, and the three variants on one parameter budget."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.models.vilbert import (
    STREAMS,
    CoAttention,
    ViLBERT,
    ViLBERTConfig,
    budgeted,
    count_params,
    mask_patches,
    patch_pixels,
)

TINY = ViLBERTConfig(vocab_size=20, block_size=16, n_answers=5, image_size=16, in_channels=3, patch_size=4,
                     n_embd=16, n_head=2, n_coattn_layers=2, dropout=0.0, attention_dropout=0.0)  # fmt: skip


def _batch(B=3, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 20, (B, T), generator=g)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones(B, T, dtype=torch.long)
    ids[1, 5:], mask[1, 5:] = 0, 0  # row 1 is padded already
    return ids, mask, torch.rand(B, 3, 16, 16, generator=g)


@pytest.mark.parametrize("streams", STREAMS)
def test_shapes_of_every_head(streams):
    model = ViLBERT(dataclasses.replace(TINY, streams=streams)).eval()
    ids, mask, images = _batch()
    heads = ("vqa", "mlm") if streams == "text" else ("vqa", "mlm", "region")
    out = model(ids, mask, images, heads=heads)
    assert out.logits.shape == (3, 5) and out.text.shape == (3, 7, 16) and out.mlm_logits.shape == (3, 7, 20)
    if streams == "text":
        assert out.visual is None and out.region is None
        with pytest.raises(ValueError, match="no image"):
            model(ids, mask, images, heads=("region",))
    else:
        assert out.visual.shape == (3, 16 + 1, 16)  # [IMG] + a 4 x 4 grid of patches
        assert out.region.shape == (3, 16, 4 * 4 * 3)
        with pytest.raises(ValueError, match="reads an image"):
            model(ids, mask, None)
    out.logits.sum().backward()


@pytest.mark.parametrize("streams", STREAMS)
def test_extra_text_padding_changes_nothing(streams):
    torch.manual_seed(0)
    model = ViLBERT(dataclasses.replace(TINY, streams=streams)).eval()
    ids, mask, images = _batch()
    pad = 4
    ids2 = torch.cat([ids, torch.zeros(3, pad, dtype=torch.long)], 1)
    mask2 = torch.cat([mask, torch.zeros(3, pad, dtype=torch.long)], 1)
    a, b = model(ids, mask, images), model(ids2, mask2, images)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
    real = mask.bool()
    torch.testing.assert_close(a.text[real], b.text[:, :7][real], atol=1e-5, rtol=1e-5)
    if a.visual is not None:
        torch.testing.assert_close(a.visual, b.visual, atol=1e-5, rtol=1e-5)


def test_image_queries_never_attend_to_text_pads():
    torch.manual_seed(0)
    layer = CoAttention(TINY).eval()
    w, v = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    am = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    pad = am.bool()[:, None, None, :]  # (B, 1, 1, T)
    w2 = w.clone()
    w2[0, 4:] = 100.0 * torch.randn(2, 16)  # anything at the pads
    wa, va = layer(w, v, pad)
    wb, vb = layer(w2, v, pad)
    torch.testing.assert_close(va, vb)  # the image stream did not read them
    torch.testing.assert_close(wa[0, :4], wb[0, :4])  # nor did the text stream's real tokens
    torch.testing.assert_close(wa[1], wb[1])
    # The attention weights of the image queries over the text keys: zero at the pads.
    attn = layer.image_from_text
    q = attn.q(v).view(2, 5, 2, 8).transpose(1, 2)  # (B, H, S, D)
    k = attn.kv(w).view(2, 6, 2, 2, 8)[:, :, 0].transpose(1, 2)  # (B, H, T, D)
    from genlab.layers.attention import attention_weights

    weights = attention_weights(q, k, pad)  # (B, H, S, T)
    assert float(weights[0, :, :, 4:].detach().abs().max()) == 0.0
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))


def test_co_attention_exchanges_information_both_ways():
    torch.manual_seed(0)
    model = ViLBERT(TINY).eval()
    ids, mask, images = _batch()
    a = model(ids, mask, images)
    b = model(ids, mask, images.flip(-1))  # another image: the text states change
    assert not torch.allclose(a.text, b.text)
    ids2 = ids.clone()
    ids2[:, 1] = (ids2[:, 1] + 1 - 5) % 15 + 5  # another word: the visual states change
    c = model(ids2, mask, images)
    assert not torch.allclose(a.visual, c.visual)


@pytest.mark.parametrize("streams", STREAMS)
def test_eager_reference_equals_sdpa(streams):
    cfg = budgeted(dataclasses.replace(TINY, streams=streams))
    torch.manual_seed(0)
    fast = ViLBERT(cfg).eval()
    ref = ViLBERT(dataclasses.replace(cfg, attention="eager")).eval()
    ref.load_state_dict(fast.state_dict())
    ids, mask, images = _batch()
    torch.testing.assert_close(ref(ids, mask, images).logits, fast(ids, mask, images).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg", [TINY, ViLBERTConfig(vocab_size=31, n_answers=13, patch_size=16)],
                         ids=["tiny", "recipe"])  # fmt: skip
def test_three_variants_share_one_parameter_budget(cfg):
    counts = {s: count_params(budgeted(dataclasses.replace(cfg, streams=s))) for s in STREAMS}
    print("parameters (VQA, no pretraining heads):", counts)
    for s in ("one", "text"):
        assert abs(counts[s] - counts["two"]) / counts["two"] < 0.05, counts
    solved = budgeted(dataclasses.replace(cfg, streams="one"))
    assert solved.n_inner > 0 and solved.depth == cfg.n_text_layers + 2 * cfg.n_coattn_layers
    assert ViLBERT(dataclasses.replace(cfg, streams="one")).config.n_inner == solved.n_inner  # the model solves too


def test_a_baseline_too_deep_for_the_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="model.n_layer lower"):
        budgeted(dataclasses.replace(TINY, streams="one", n_layer=40))
    with pytest.raises(ConfigError, match="streams="):
        ViLBERTConfig(streams="three")
    with pytest.raises(ConfigError, match="divisible by patch_size"):
        ViLBERTConfig(image_size=20, patch_size=8)


def test_cnn_feature_cells_as_the_visual_tokens():
    cfg = dataclasses.replace(TINY, visual="cnn", cnn_width=8)
    model = ViLBERT(cfg).eval()
    ids, mask, images = _batch()
    out = model(ids, mask, images, heads=("vqa", "region"))
    assert out.visual.shape == (3, 17, 16) and out.region.shape == (3, 16, 48)  # one token per 4x4 image patch
    assert abs(
        count_params(budgeted(dataclasses.replace(cfg, streams="one"))) - count_params(cfg)
    ) < 0.05 * count_params(cfg)
    with pytest.raises(ConfigError, match="must divide by 4"):
        ViLBERTConfig(visual="cnn", patch_size=6, image_size=12)


def test_masked_patches_are_the_regression_targets_rows():
    images = torch.rand(2, 3, 16, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 5]], mask[1, 15] = True, True
    masked = patch_pixels(mask_patches(images, mask, 4), 4)  # (B, N, P P C)
    full = patch_pixels(images, 4)
    assert float(masked[mask].abs().max()) == 0.0
    torch.testing.assert_close(masked[~mask], full[~mask])
    # Row-major: patch 5 is grid row 1, column 1, the pixels [4:8, 4:8].
    torch.testing.assert_close(full[0, 5].view(4, 4, 3), images[0, :, 4:8, 4:8].permute(1, 2, 0))


def test_save_load_round_trip(tmp_path):
    from safetensors.torch import save_file

    from genlab.training.checkpoint import load_weights, model_tensors

    model = ViLBERT(TINY).eval()
    save_file(model_tensors(model), tmp_path / "m.safetensors")
    other = ViLBERT(TINY).eval()
    load_weights(other, tmp_path / "m.safetensors")
    ids, mask, images = _batch()
    torch.testing.assert_close(model(ids, mask, images, heads=("vqa", "mlm")).mlm_logits,
                               other(ids, mask, images, heads=("vqa", "mlm")).mlm_logits)  # fmt: skip
    assert other.mlm.decoder.weight is other.tok_emb.weight  # the masked-word decoder stays tied
