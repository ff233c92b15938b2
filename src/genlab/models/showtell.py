"""Image captioning: Show & Tell, and Show, Attend and Tell, one family.

Axes: B batch, C_in image channels, S image side, N image locations (the encoder's grid cells),
F feature width, E word-embedding width, L LSTM layers, H LSTM hidden width, A attention width,
T caption tokens, V vocabulary.

**Encoder** (:class:`ImageEncoder`, reusable on its own): the stages of :mod:`genlab.models.cnn`
(``vgg`` / ``lenet`` / ``resnet``; each halves the side) or a ViT (:mod:`genlab.models.vit`: patch
embedding and pre-norm blocks), by config. Either gives spatial features a = (a_1 .. a_N), one
F-wide vector per grid cell, (B, N, F), and their mean, the pooled feature (B, F).

**Show & Tell** (Vinyals et al. 2015, arXiv:1411.4555, eq. 10-12)::

    x_{-1} = W_I CNN(I)                 the pooled feature projected to the embedding width
    x_t    = W_e S_t,  t = 0 .. N-1     S_0 the start token
    h_t    = LSTM(x_t, h_{t-1})         the image is the LSTM's input once, at t = -1
    p_{t+1} = softmax(W_o h_t)

**Show, Attend and Tell** (Xu et al. 2015, arXiv:1502.03044, ``decoder="attend"``): the state
starts from the mean annotation, h_0 = tanh(W_h mean(a)), c_0 = tanh(W_c mean(a)) (sec. 3.1.2), and
every step attends over the N locations (soft, "deterministic" attention, sec. 4.2)::

    e_{t,i}  = w^T tanh(W_a a_i + U_a h_{t-1})          alpha_t = softmax_i(e_t)      (eq. 4-5)
    z_t      = beta_t sum_i alpha_{t,i} a_i,  beta_t = sigmoid(f_beta(h_{t-1}))    (sec. 4.2.1 gate)
    h_t      = LSTM([E y_{t-1}; z_t], h_{t-1})
    p(y_t)   = softmax(L_o(E y_{t-1} + L_h h_t + L_z z_t))                          (eq. 7, deep output)

and training may add the doubly stochastic penalty lambda sum_i (1 - sum_t alpha_{t,i})^2 (eq. 14).

**Decoding** goes through :mod:`genlab.generation.decode` (greedy, sampling, beam search): the
model is an encoder-decoder there (``is_encoder_decoder``) whose inputs are images
(:meth:`ShowTell.encode_inputs`) and whose cache is the LSTM state (:class:`LSTMCache`): the first
step runs the image (or the attention's initial state) and the start token, each later step one
token. ``forward`` is the teacher-forced training path: one fused ``nn.LSTM`` call over the image
and the whole caption for Show & Tell; :meth:`decode` without a cache recomputes everything (the
engine's reference path); tests check the paths equal and greedy decoding equal to a plain
step-by-step loop written from the LSTM equations.

An image with the wrong number of channels for the model is a one-line error naming both counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.core.registry import register
from genlab.models.cnn import ARCHS as CNN_ARCHS
from genlab.models.cnn import CNNConfig, ResidualBlock, lenet_stage, vgg_stage
from genlab.models.vit import ViT, ViTConfig

ENCODERS = ("cnn", "vit")
DECODERS = ("showtell", "attend")


# --- Config ---------------------------------------------------------------------------


@dataclass
class ImageEncoderConfig:
    kind: str = "cnn"  # cnn (genlab's CNN stages) | vit (patch embedding + Transformer blocks)
    in_channels: int = 3  # 3: RGB, 1: grayscale; an image with another count is an error
    image_size: int = 64
    arch: str = "vgg"  # cnn: vgg | lenet | resnet
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # cnn: channels of each stage
    batch_norm: bool = True  # cnn
    patch_size: int = 8  # vit
    n_layer: int = 2  # vit
    n_head: int = 4  # vit
    n_embd: int = 128  # vit

    def __post_init__(self):
        if self.kind not in ENCODERS:
            raise ConfigError(f"image encoder kind='{self.kind}' is not one of {list(ENCODERS)}")
        if self.in_channels < 1:
            raise ConfigError(f"in_channels must be at least 1, got {self.in_channels}")
        if self.kind == "cnn":
            if self.arch not in CNN_ARCHS:
                raise ConfigError(f"image encoder arch='{self.arch}' is not one of {CNN_ARCHS}")
            if not self.widths or self.image_size >> len(self.widths) < 1:
                raise ConfigError(f"{len(self.widths)} CNN stages do not fit a {self.image_size}px image")
        elif self.image_size % self.patch_size or self.n_embd % self.n_head:
            raise ConfigError(f"vit: image_size={self.image_size} needs a dividing patch_size (got {self.patch_size}) "
                              f"and n_embd={self.n_embd} a dividing n_head (got {self.n_head})")  # fmt: skip

    @property
    def width(self) -> int:
        """F: the width of each location's feature."""
        return self.widths[-1] if self.kind == "cnn" else self.n_embd


@dataclass
class ShowTellConfig:
    vocab_size: int = 1000
    block_size: int = 32  # the longest caption the decoder reads or writes, start token included
    pad_id: int = 0
    decoder_start_id: int = 2  # the start token S_0 (the tokenizer's [CLS])
    eos_id: int = 3  # the end token (the tokenizer's [SEP])
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    decoder: str = "showtell"  # showtell (Vinyals et al.) | attend (Xu et al., soft attention)
    n_embd: int = 128  # E: word embeddings, and the projected image feature of Show & Tell
    n_hidden: int = 256  # H
    n_layer: int = 1  # L
    attn_dim: int = 128  # A (attend)
    dropout: float = 0.3

    def __post_init__(self):
        if isinstance(self.image, dict):  # built from a plain dict (a config section)
            self.image = ImageEncoderConfig(**self.image)
        if self.decoder not in DECODERS:
            raise ConfigError(f"decoder='{self.decoder}' is not one of {list(DECODERS)}")
        for name in ("vocab_size", "block_size", "n_embd", "n_hidden", "n_layer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


# --- Encoder ----------------------------------------------------------------------------


def check_channels(x: torch.Tensor, want: int) -> None:
    """A one-line error naming both counts when images (B, C, S, S) do not have ``want`` channels."""
    if x.dim() != 4:
        raise ConfigError(f"expected a batch of images (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    if x.size(1) != want:
        plural = lambda n: f"{n} channel{'s' if n != 1 else ''}"
        raise ConfigError(f"the image has {plural(x.size(1))} but this model takes {plural(want)} "
                          f"({'RGB' if want == 3 else 'grayscale' if want == 1 else 'its input'} images)")  # fmt: skip


class ImageEncoder(nn.Module):
    """Images (B, C_in, S, S) in [0, 1] -> spatial features (B, N, F) (:meth:`forward`) and their
    mean (B, F) (:meth:`pooled`): genlab's CNN stages or a ViT, by config."""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        self.config = cfg
        if cfg.kind == "cnn":
            ccfg = CNNConfig(arch=cfg.arch, in_channels=cfg.in_channels, image_size=cfg.image_size,
                             widths=list(cfg.widths), batch_norm=cfg.batch_norm)  # fmt: skip
            c, stages = cfg.in_channels, []
            for w in cfg.widths:
                stage = {"vgg": vgg_stage, "lenet": lenet_stage}.get(cfg.arch)
                stages.append(stage(ccfg, c, w) if stage else ResidualBlock(ccfg, c, w, stride=2))
                c = w
            self.cnn = nn.Sequential(*stages)
        else:
            vcfg = ViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
                             n_classes=1, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, mlp_ratio=2.0,
                             pool="mean", norm_eps=1e-6)  # fmt: skip
            self.vit = ViT(vcfg)
            self.vit.head = nn.Identity()  # the classifier head is not used: features only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(x, self.config.in_channels)
        if self.config.kind == "cnn":
            h = self.cnn(x)  # (B, F, G, G)
            return h.flatten(2).transpose(1, 2)  # (B, N, F)
        h, _ = self.vit.embed(x)  # (B, N, F): mean pooling, no class token
        for block in self.vit.blocks:
            h = block(h)
        return self.vit.ln_f(h)  # (B, N, F)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The mean over locations (B, F): Show & Tell's image feature, the nearest-neighbour space."""
        return self.forward(x).mean(1)


# --- Decoding cache -----------------------------------------------------------------------


class LSTMCache:
    """What the generation engine keeps between steps of a recurrent decoder: the (h, c) state
    after the tokens so far, each (L, B, H), and in ``cross`` what the attention reads at every
    step, computed at the first one: the features a (B, N, F) and their projection W_a a (B, N, A).
    The engine's cache interface: ``length``, ``cross``, ``reset``, ``repeat_rows``, ``reorder``."""

    def __init__(self):
        self.h: torch.Tensor | None = None
        self.c: torch.Tensor | None = None
        self.length = 0  # tokens consumed
        self.cross: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        self.h = self.c = None
        self.length, self.cross = 0, {}

    def repeat_rows(self, n: int) -> None:
        """Row r becomes rows r n .. r n + n - 1 (samples or beams of one image)."""
        if n == 1 or self.h is None:
            return
        self.h, self.c = self.h.repeat_interleave(n, dim=1), self.c.repeat_interleave(n, dim=1)  # (L, B n, H)
        self.cross = {k: v.repeat_interleave(n, dim=0) for k, v in self.cross.items()}

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Keep rows ``index`` (beam search); ``cross=False`` when they only move among copies of one image."""
        self.h, self.c = self.h.index_select(1, index), self.c.index_select(1, index)
        if cross:
            self.cross = {k: v.index_select(0, index) for k, v in self.cross.items()}


# --- Model ------------------------------------------------------------------------------


@dataclass
class CaptionOutput:
    logits: torch.Tensor  # (B, T, V): p(token t + 1 | image, tokens <= t)
    alphas: torch.Tensor | None = None  # attend: (B, T, N) attention weights of each step


class ShowTell(nn.Module):
    is_encoder_decoder = True  # the generation engine encodes the images once, then decodes

    def __init__(self, cfg: ShowTellConfig):
        super().__init__()
        self.config = cfg
        E, H, L, F = cfg.n_embd, cfg.n_hidden, cfg.n_layer, cfg.image.width
        self.encoder = ImageEncoder(cfg.image)
        self.embed = nn.Embedding(cfg.vocab_size, E)
        self.drop = nn.Dropout(cfg.dropout)
        attend = cfg.decoder == "attend"
        self.lstm = nn.LSTM(E + (F if attend else 0), H, L, batch_first=True, dropout=cfg.dropout if L > 1 else 0.0)
        if attend:
            self.init_h, self.init_c = nn.Linear(F, L * H), nn.Linear(F, L * H)  # h_0, c_0 from mean(a)
            self.att_feat, self.att_hid = nn.Linear(F, cfg.attn_dim), nn.Linear(H, cfg.attn_dim)  # W_a, U_a
            self.att_score = nn.Linear(cfg.attn_dim, 1)  # w
            self.gate = nn.Linear(H, F)  # f_beta
            self.out_h, self.out_z = nn.Linear(H, E), nn.Linear(F, E)  # L_h, L_z
            self.head = nn.Linear(E, cfg.vocab_size)  # L_o
        else:
            self.img_proj = nn.Linear(F, E)  # W_I
            self.head = nn.Linear(H, cfg.vocab_size)  # W_o

    # -- the image side --

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C_in, S, S) in [0, 1] -> spatial features a (B, N, F): the decoder's memory."""
        return self.encoder(images)

    def encode_inputs(self, images) -> tuple[torch.Tensor, None]:
        """The generation engine's entry for non-token inputs: a list of (C_in, S, S) images or a
        (B, C_in, S, S) batch -> (memory, no mask)."""
        device = self.embed.weight.device
        if isinstance(images, (list, tuple)):
            if not images:
                raise ConfigError("no image to caption")
            for im in images:
                check_channels(im[None] if im.dim() == 3 else im, self.config.image.in_channels)
            images = torch.stack(list(images))
        return self.encode(images.to(device)), None

    def make_cache(self, batch: int = 0, max_len: int = 0, dtype=None, device=None) -> LSTMCache:
        """An empty LSTM state (its size is set by the first step)."""
        return LSTMCache()

    def start_state(self, memory: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
        """The LSTM state before the start token, and what the attention reads at every step.

        Show & Tell: the state after the image x_{-1} = W_I mean(a) ran through the LSTM from zeros;
        attend: h_0, c_0 = tanh(W mean(a)), and cross = {a, W_a a}."""
        cfg, (B, _, _) = self.config, memory.shape
        mean = memory.mean(1)  # (B, F)
        if cfg.decoder == "attend":
            L, H = cfg.n_layer, cfg.n_hidden
            h = torch.tanh(self.init_h(mean)).view(B, L, H).transpose(0, 1).contiguous()  # (L, B, H)
            c = torch.tanh(self.init_c(mean)).view(B, L, H).transpose(0, 1).contiguous()  # (L, B, H)
            return (h, c), {"memory": memory, "keys": self.att_feat(memory)}  # keys (B, N, A)
        _, state = self.lstm(self.img_proj(mean)[:, None])  # (B, 1, E) -> h, c (L, B, H)
        return state, {}

    # -- the token side --

    def attend(self, h_top: torch.Tensor, cross: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft attention (eq. 4-5 and the beta gate): h_{t-1} (B, H) -> z_t (B, F), alpha_t (B, N)."""
        e = self.att_score(torch.tanh(cross["keys"] + self.att_hid(h_top)[:, None])).squeeze(-1)  # (B, N)
        alpha = torch.softmax(e, dim=-1)  # (B, N)
        z = (alpha[:, :, None] * cross["memory"]).sum(1)  # (B, F)
        return torch.sigmoid(self.gate(h_top)) * z, alpha

    def run_tokens(self, ids: torch.Tensor, state, cross: dict):
        """Tokens (B, T) from ``state`` -> logits (B, T, V), the new state, alphas (B, T, N) or None."""
        x = self.drop(self.embed(ids))  # (B, T, E)
        if self.config.decoder == "showtell":
            out, state = self.lstm(x, state)  # (B, T, H): all steps in one fused call
            return self.head(self.drop(out)), state, None
        logits, alphas = [], []
        for t in range(ids.size(1)):
            z, alpha = self.attend(state[0][-1], cross)  # from the top layer's h_{t-1}
            out, state = self.lstm(torch.cat([x[:, t], z], dim=-1)[:, None], state)  # (B, 1, H)
            deep = x[:, t] + self.out_h(self.drop(out[:, 0])) + self.out_z(z)  # (B, E), eq. 7
            logits.append(self.head(self.drop(deep)))
            alphas.append(alpha)
        return torch.stack(logits, 1), state, torch.stack(alphas, 1)  # (B, T, V), state, (B, T, N)

    def decode(self, ids: torch.Tensor, memory: torch.Tensor | None, memory_mask=None, cache: LSTMCache | None = None,
               positions=None, last_only: bool = False) -> torch.Tensor:  # fmt: skip
        """The generation engine's step: logits (B, T, V) of tokens ``ids`` (B, T) that follow the
        tokens in ``cache`` (none: ``ids`` is the whole caption from the start token, recomputed
        from ``memory``). ``memory_mask`` and ``positions`` are not used (every image has N cells)."""
        if cache is None or cache.length == 0:
            if memory is None:
                raise ConfigError("the first decoding step needs the image features (memory)")
            state, cross = self.start_state(memory)
        else:
            state, cross = (cache.h, cache.c), cache.cross
        logits, state, _ = self.run_tokens(ids, state, cross)
        if cache is not None:
            (cache.h, cache.c), cache.cross = state, cross
            cache.length += ids.size(1)
        return logits[:, -1:] if last_only else logits

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> CaptionOutput:
        """Teacher forcing: images (B, C_in, S, S) and tokens (B, T) (start token first) -> logits (B, T, V)."""
        if ids.size(1) > self.config.block_size:
            raise ConfigError(
                f"a caption of {ids.size(1)} tokens exceeds the model's block_size={self.config.block_size}"
            )
        memory = self.encode(images)
        state, cross = self.start_state(memory)
        logits, _, alphas = self.run_tokens(ids, state, cross)
        return CaptionOutput(logits, alphas)

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled encoder feature (B, F) of each image: the space of the nearest-neighbour baseline."""
        return self.encoder.pooled(images)


def attention_penalty(alphas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Doubly stochastic attention (Xu et al. eq. 14), sum_i (1 - sum_t alpha_{t,i})^2 averaged over
    images: alphas (B, T, N), a (B, T) 1/0 mask of the real steps. It pushes every location to
    receive some attention over the caption."""
    total = (alphas * mask[:, :, None].to(alphas.dtype)).sum(1)  # (B, N)
    return ((1.0 - total) ** 2).sum(-1).mean()


# --- Presets ----------------------------------------------------------------------------
# CPU shapes: 64 x 64 images, a few minutes of training on two cores.


@register("showtell-tuxpaint")
def showtell_tuxpaint() -> ShowTellConfig:
    """Show & Tell for 64 x 64 RGB drawings: three VGG stages (16, 32, 64: an 8 x 8 grid), a
    1-layer LSTM 256 wide over 128-wide word embeddings."""
    return ShowTellConfig(image=ImageEncoderConfig(in_channels=3, image_size=64, widths=[16, 32, 64]),
                          n_embd=128, n_hidden=256, dropout=0.3)  # fmt: skip


@register("showattend-tuxpaint")
def showattend_tuxpaint() -> ShowTellConfig:
    """Show, Attend and Tell on the same encoder: soft attention over the 8 x 8 grid."""
    return ShowTellConfig(image=ImageEncoderConfig(in_channels=3, image_size=64, widths=[16, 32, 64]),
                          decoder="attend", n_embd=128, n_hidden=256, attn_dim=128, dropout=0.3)  # fmt: skip


@register("showtell-scenes")
def showtell_scenes() -> ShowTellConfig:
    """Show & Tell for 64 x 64 grayscale Fashion-MNIST scenes: VGG stages 16, 32, 64, LSTM 192 wide."""
    return ShowTellConfig(image=ImageEncoderConfig(in_channels=1, image_size=64, widths=[16, 32, 64]),
                          n_embd=96, n_hidden=192, dropout=0.1)  # fmt: skip


@register("showattend-scenes")
def showattend_scenes() -> ShowTellConfig:
    """Show, Attend and Tell for the scenes: attention over the 8 x 8 grid can look at each item's place."""
    return ShowTellConfig(image=ImageEncoderConfig(in_channels=1, image_size=64, widths=[16, 32, 64]),
                          decoder="attend", n_embd=96, n_hidden=192, attn_dim=96, dropout=0.1)  # fmt: skip


@register("showtell-vit-scenes")
def showtell_vit_scenes() -> ShowTellConfig:
    """Show & Tell with a ViT encoder: 8 x 8 patches (an 8 x 8 grid), 2 blocks 96 wide."""
    return ShowTellConfig(image=ImageEncoderConfig(kind="vit", in_channels=1, image_size=64, patch_size=8,
                                                   n_layer=2, n_head=4, n_embd=96),
                          n_embd=96, n_hidden=192, dropout=0.1)  # fmt: skip
