"""Every registered preset gets a forward, a backward and a save/load round trip, for free.

Opt-out, not opt-in: the test walks ``genlab.core.registry.presets()``, and each preset's
family (``genlab.models.FAMILIES``) needs an :class:`Adapter` below that makes its inputs,
reduces its output to a scalar (asserting the family's output shapes on the way) and names
the tensors that must come back identical after a save/load. A new family's presets fail
until it has one; :data:`OPT_OUT` is the only way to skip a preset, with a reason.

Presets over ``Adapter.small`` parameters (counted on the meta device) run shrunk to one
layer and a narrow width; a family without a ``shrink`` must keep its presets small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn as nn

from genlab.core.registry import preset, presets
from genlab.models import FAMILIES, build_model, family_of
from genlab.models.gan import gan_parts
from genlab.models.outputs import logits_of
from genlab.models.vae import VAEOutput
from genlab.training.checkpoint import load_weights, model_tensors

OPT_OUT: dict[str, str] = {}  # preset name -> why it gets no forward/backward/save-load test


@dataclass
class Adapter:
    inputs: Callable[[Any], tuple]  # cfg -> the fixed inputs of this preset's test
    loss: Callable[[nn.Module, Any, tuple], torch.Tensor]  # (model, cfg, inputs) -> a scalar; asserts shapes
    outputs: Callable[[nn.Module, tuple], list[torch.Tensor]]  # (model, inputs) -> equal after a reload
    shrink: Callable[[Any], Any] | None = None  # cfg -> a small config of the same kind
    small: float = 20e6  # presets with more parameters run shrunk
    parts: Callable[[nn.Module], dict[str, nn.Module]] = lambda model: {"model": model}  # saved one file each


def narrow(cfg):
    """One layer, 8 channels per head, a short context: the shape of the preset at a fraction of its cost."""
    return dataclasses.replace(cfg, n_layer=1, n_embd=cfg.n_head * 8, block_size=64)


# --- gpt ------------------------------------------------------------------------------


def gpt_loss(model, cfg, inputs):
    (ids,) = inputs
    logits = logits_of(model(ids))
    assert logits.shape == (2, 8, cfg.vocab_size)
    return logits.float().logsumexp(-1).mean()


GPT = Adapter(
    inputs=lambda cfg: (torch.randint(0, cfg.vocab_size, (2, 8)),),
    loss=gpt_loss,
    outputs=lambda model, inputs: [logits_of(model(*inputs))],
    shrink=narrow,
)


# --- bert -----------------------------------------------------------------------------

BERT_OUTPUTS = ("hidden", "pooled", "mlm_logits", "nsp_logits", "logits", "token_logits", "start_logits",
                "end_logits", "sop_logits", "rtd_logits")  # fmt: skip


def bert_inputs(cfg):
    """Two sequences of 8 and 5 real tokens, right-padded, a 1/0 mask and two segments."""
    lengths = torch.tensor([8, 5])
    ids = torch.randint(1, cfg.vocab_size, (2, 8))
    mask = (torch.arange(8)[None, :] < lengths[:, None]).long()  # (B, T)
    ids[mask == 0] = cfg.pad_token_id or 0
    types = (torch.arange(8)[None, :] >= lengths[:, None] // 2).long() * mask
    types = types.clamp(max=cfg.type_vocab_size - 1) if cfg.type_vocab_size else None
    return ids, mask, types


def bert_present(out) -> list[torch.Tensor]:
    return [getattr(out, k) for k in BERT_OUTPUTS if getattr(out, k) is not None]


def bert_loss(model, cfg, inputs):
    out = model(*inputs)
    assert out.hidden.shape == (2, 8, cfg.n_embd)
    if "mlm" in cfg.heads:
        assert out.mlm_logits.shape == (2, 8, cfg.vocab_size)
    return sum(t.float().square().mean() for t in bert_present(out))


BERT = Adapter(
    inputs=bert_inputs,
    loss=bert_loss,
    outputs=lambda model, inputs: bert_present(model(*inputs)),
    shrink=narrow,
    small=6e6,  # the 11-14M ALBERT/ELECTRA presets run shrunk too: the test stays as fast as it was
)


# --- cnn ------------------------------------------------------------------------------


def cnn_loss(model, cfg, inputs):
    logits = model(*inputs)
    assert logits.shape == (3, cfg.n_classes)
    return logits.logsumexp(-1).mean()


CNN = Adapter(
    inputs=lambda cfg: (torch.rand(3, cfg.in_channels, cfg.image_size, cfg.image_size),),
    loss=cnn_loss,
    outputs=lambda model, inputs: [model(*inputs)],
)


# --- vae ------------------------------------------------------------------------------


def vae_inputs(cfg):
    """Images x, labels y (conditional presets only) and a latent z to decode."""
    y = torch.arange(3) % cfg.n_classes if cfg.n_classes else None
    return torch.rand(3, cfg.in_channels, cfg.image_size, cfg.image_size), y, torch.randn(3, cfg.latent_dim)


def vae_loss(model, cfg, inputs):
    x, y, _ = inputs
    out = model(x, y)
    assert isinstance(out, VAEOutput)
    assert out.recon.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, cfg.latent_dim)
    return out.recon.square().mean() + out.mu.square().mean() + out.logvar.exp().mean()


VAE = Adapter(
    inputs=vae_inputs,
    loss=vae_loss,
    outputs=lambda model, inputs: [*model.encode(inputs[0], inputs[1]), model.decode(inputs[2], inputs[1])],
)


# --- gan ------------------------------------------------------------------------------


def gan_inputs(cfg):
    """Latents z, labels y (conditional presets only) and real-looking images for D."""
    y = torch.arange(3) % cfg.n_classes if cfg.n_classes else None
    return torch.randn(3, cfg.latent_dim), y, torch.rand(3, cfg.in_channels, cfg.image_size, cfg.image_size)


def gan_loss(gan, cfg, inputs):
    z, y, _ = inputs
    x = gan.generator(z, y)
    assert x.shape == (3, cfg.in_channels, cfg.image_size, cfg.image_size)
    assert x.min() >= 0.0 and x.max() <= 1.0
    logits = gan.discriminator(x, y)
    assert logits.shape == (3,)
    return logits.mean()


def gan_outputs(gan, inputs):
    z, y, images = inputs
    out = [gan.generator(z, y), gan.discriminator(images, y)]
    return out + ([gan.generator_ema(z, y)] if gan.generator_ema is not None else [])


GAN = Adapter(
    inputs=gan_inputs,
    loss=gan_loss,
    outputs=gan_outputs,
    parts=lambda gan: gan_parts(gan, include_ema=True),  # the files a training checkpoint writes
)


# --- seq2seq ---------------------------------------------------------------------------


def seq2seq_inputs(cfg):
    """Sources of 8 and 5 real tokens (right-padded, a 1/0 mask) and decoder inputs of 6."""
    src = torch.randint(3, cfg.vocab_size, (2, 8))
    mask = (torch.arange(8)[None, :] < torch.tensor([8, 5])[:, None]).long()  # (B, S)
    src[mask == 0] = cfg.pad_id
    return src, mask, torch.randint(3, cfg.vocab_size, (2, 6))


def seq2seq_loss(model, cfg, inputs):
    logits = model(*inputs).logits
    assert logits.shape == (2, 6, cfg.vocab_size)
    return logits.float().logsumexp(-1).mean()


def seq2seq_shrink(cfg):
    """One layer per stack, 8 channels per head, a short context."""
    return dataclasses.replace(cfg, n_layer=1, n_decoder_layer=1, n_embd=cfg.n_head * 8, head_dim=0, d_ff=64,
                               block_size=64)  # fmt: skip


SEQ2SEQ = Adapter(
    inputs=seq2seq_inputs,
    loss=seq2seq_loss,
    outputs=lambda model, inputs: [model(*inputs).logits],
    shrink=seq2seq_shrink,
)


# --- vit (and the CNN + Transformer hybrid) -------------------------------------------


def vit_loss(model, cfg, inputs):
    out = model(*inputs, attentions=True)
    assert out.logits.shape == (3, cfg.n_classes)
    assert len(out.attentions) == cfg.n_layer and out.attentions[0].shape == (3, cfg.n_head, cfg.n_tokens, cfg.n_tokens)
    return out.logits.logsumexp(-1).mean()


VIT = Adapter(
    inputs=lambda cfg: (torch.rand(3, cfg.in_channels, cfg.image_size, cfg.image_size),),
    loss=vit_loss,
    outputs=lambda model, inputs: [model(*inputs)],
    shrink=lambda cfg: dataclasses.replace(cfg, n_layer=1, n_embd=cfg.n_head * 8, image_size=2 * cfg.patch_size),
)


# --- forecast -------------------------------------------------------------------------


def forecast_loss(model, cfg, inputs):
    out = model(*inputs)
    assert out.shape == (3, cfg.horizon, cfg.n_out)
    return out.square().mean()


FORECAST = Adapter(
    inputs=lambda cfg: (torch.randn(3, cfg.window),),
    loss=forecast_loss,
    outputs=lambda model, inputs: [model(*inputs)],
)


# --- showtell -------------------------------------------------------------------------


def showtell_inputs(cfg):
    """Three images and captions of 6 tokens, the start token first."""
    ids = torch.randint(0, cfg.vocab_size, (3, 6))
    ids[:, 0] = cfg.decoder_start_id
    return torch.rand(3, cfg.image.in_channels, cfg.image.image_size, cfg.image.image_size), ids


def showtell_loss(model, cfg, inputs):
    out = model(*inputs)
    assert out.logits.shape == (3, 6, cfg.vocab_size)
    if cfg.decoder == "attend":
        assert out.alphas.shape[:2] == (3, 6)
    return out.logits.logsumexp(-1).mean()


SHOWTELL = Adapter(
    inputs=showtell_inputs,
    loss=showtell_loss,
    outputs=lambda model, inputs: [model(*inputs).logits],
)


ADAPTERS: dict[str, Adapter] = {"gpt": GPT, "bert": BERT, "cnn": CNN, "vae": VAE, "gan": GAN, "seq2seq": SEQ2SEQ,
                                "vit": VIT, "forecast": FORECAST, "showtell": SHOWTELL}  # fmt: skip


# --- the tests --------------------------------------------------------------------------


def test_every_family_has_an_adapter_and_every_opt_out_is_a_preset():
    assert set(FAMILIES) - set(ADAPTERS) == set(), "give each new family an Adapter in tests/models/test_presets.py"
    assert set(ADAPTERS) - set(FAMILIES) == set()
    assert set(OPT_OUT) <= set(presets())


def param_count(cfg) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(cfg).parameters())


def runnable(name: str, adapter: Adapter):
    cfg = preset(name)
    if param_count(cfg) > adapter.small:
        assert adapter.shrink is not None, f"{name} has over {adapter.small:.0e} parameters: give its adapter a shrink"
        cfg = adapter.shrink(cfg)
    return cfg


@pytest.mark.parametrize("name", presets())
def test_every_preset_forward_backward_save_load(name, tmp_path):
    from safetensors.torch import save_file

    if name in OPT_OUT:
        pytest.skip(f"opted out: {OPT_OUT[name]}")
    family = family_of(preset(name))
    assert family in ADAPTERS, f"family '{family}' has no adapter in tests/models/test_presets.py"
    adapter = ADAPTERS[family]
    cfg = runnable(name, adapter)
    model = build_model(cfg)
    inputs = adapter.inputs(cfg)
    adapter.loss(model, cfg, inputs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"no gradient reaches {no_grad[:5]}"

    for part, module in adapter.parts(model).items():
        save_file(model_tensors(module), str(tmp_path / f"{part}.safetensors"))
    other = build_model(cfg)
    for part, module in adapter.parts(other).items():
        load_weights(module, tmp_path / f"{part}.safetensors")
    model.eval(), other.eval()
    with torch.no_grad():
        expected, got = adapter.outputs(model, inputs), adapter.outputs(other, inputs)
    assert len(expected) == len(got) > 0
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
