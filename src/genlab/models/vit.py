"""Vision Transformer (ViT) and its CNN + Transformer hybrid, one family.

Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words", arXiv:2010.11929.

Axes: B batch, C_in image channels, S image side, P patch side, G grid side (S / P), N = G * G
patches, T tokens (N, plus 1 with a class token), C model dim (n_embd), H heads, D head dim, K classes.

    x_p   = patches of the image, N of them, each P x P x C_in         (a conv with stride = kernel = P)
    z_0   = [x_class; x_p^1 E; ...; x_p^N E] + E_pos                   eq. 1
    z'_l  = z_{l-1} + MSA(LN(z_{l-1}))                                 eq. 2 (pre-norm blocks)
    z_l   = z'_l + MLP(LN(z'_l))                                       eq. 3
    y     = LN(z_L^0)  (class token; ``pool="mean"``: LN of the mean over patch tokens)   eq. 4
    logits = y W_head

Variants are config data:

- ``pool``: ``cls`` (a learned class token, the paper's) or ``mean`` (global average pooling of the
  patch tokens, the paper's appendix D.3 alternative);
- ``pos``: ``learned`` (a (1, T, C) table, bicubically interpolated over the grid when the image
  size differs from the one trained at: the paper's section 3.2 "fine-tuning at higher resolution")
  or ``sinusoidal`` (a fixed 2-D sin-cos table: half the channels encode the row, half the column;
  computed for any grid);
- ``stem``: ``""`` for the plain ViT; ``vgg`` / ``lenet`` / ``resnet`` for the **hybrid** of the
  paper's section 3.1: the stages of :mod:`genlab.models.cnn` turn the image into a feature map
  (B, C_s, S_s, S_s) and the patch embedding runs on that map (patch_size 1: every feature-map
  cell is a token), followed by the same Transformer;
- ``spt`` and ``lsa``: the two changes of Lee et al. 2021, "Vision Transformer for Small-Size
  Datasets" (arXiv:2112.13492). Shifted patch tokenization concatenates the image with four copies
  shifted by half a patch along the diagonals (zeros fill in), so each token also sees its
  neighbours' pixels, and embeds every flattened patch as LN then linear:

      x_s = [x; x shifted by (-P/2, -P/2), (-P/2, +P/2), (+P/2, -P/2), (+P/2, +P/2)]   (B, 5 C_in, S, S)
      z_p = LN(patches(x_s)) E                                                       (B, N, C)

  Locality self-attention learns the softmax temperature (one per layer, initialised at sqrt(D))
  and masks each token's score against itself, which sharpens the attention away from the diagonal:

      A = softmax(mask_diag(Q K^T) / tau) V;

- ``channels_last``: the stem's weights and its input in NHWC memory order, which the oneDNN
  convolutions run faster on CPUs (the same numbers in a different layout; checkpoints are
  stored contiguous).

``forward(x, attentions=True)`` also returns every layer's attention weights (B, H, T, T),
computed by the eager reference path (softmax(Q K^T / sqrt(D)), or LSA's), for the studio's attention maps;
the plain forward uses the fused SDPA backend (``attention`` field). Tests check the two equal.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.errors import ConfigError
from genlab.core.registry import register
from genlab.layers.attention import ATTENTION, MultiHeadAttention
from genlab.layers.mlp import MLP_KINDS, make_mlp
from genlab.layers.norm import make_norm
from genlab.layers.positional import sinusoidal_table
from genlab.models.cnn import CNNConfig, ResidualBlock, lenet_stage, vgg_stage

POOLS = ["cls", "mean"]
POSITIONS = ["learned", "sinusoidal"]
STEMS = {"": None, "vgg": vgg_stage, "lenet": lenet_stage, "resnet": None}  # resnet: ResidualBlock stages


@dataclass
class ViTConfig:
    image_size: int = 224
    patch_size: int = 16  # on the image, or on the stem's feature map for a hybrid
    in_channels: int = 3
    n_classes: int = 1000
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    mlp_ratio: float = 4.0
    mlp: str = "gelu"
    dropout: float = 0.0
    bias: bool = True  # q, k, v, projections and MLP
    pool: str = "cls"
    pos: str = "learned"
    attention: str = "sdpa"
    norm_eps: float = 1e-12  # the published checkpoints' LayerNorm epsilon
    init_std: float = 0.02
    stem: str = ""  # "" plain ViT; vgg | lenet | resnet: the CNN + Transformer hybrid
    stem_widths: list[int] = field(default_factory=list)  # channels of each stem stage (each halves the side)
    stem_batch_norm: bool = True
    spt: bool = False  # shifted patch tokenization (Lee et al. 2021)
    lsa: bool = False  # locality self-attention: learned temperature, no self-token score (Lee et al. 2021)
    channels_last: bool = False  # the stem's convolutions in NHWC memory order (faster oneDNN kernels on CPUs)

    def __post_init__(self):
        checks = {"pool": POOLS, "pos": POSITIONS, "mlp": MLP_KINDS, "attention": sorted(ATTENTION),
                  "stem": sorted(STEMS)}  # fmt: skip
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}='{getattr(self, name)}' is not one of {valid}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if bool(self.stem) != bool(self.stem_widths):
            raise ConfigError("a hybrid needs both stem (vgg | lenet | resnet) and stem_widths; a plain ViT neither")
        if self.pos == "sinusoidal" and self.n_embd % 4:
            raise ConfigError(f"pos='sinusoidal' needs n_embd divisible by 4 (2-D sin-cos), got {self.n_embd}")
        if self.spt and self.stem:
            raise ConfigError("spt shifts image patches: a hybrid's stem already sees each cell's neighbours")
        check_patches(self.image_size, self.patch_size, self.stem_widths, self.stem)

    @property
    def arch(self) -> str:
        return f"hybrid-{self.stem}" if self.stem else "vit"

    @property
    def grid(self) -> int:
        """G: patches per side at the configured image size."""
        return feature_side(self.image_size, self.stem_widths, self.stem) // self.patch_size

    @property
    def n_tokens(self) -> int:
        return self.grid**2 + (self.pool == "cls")


def feature_side(side: int, stem_widths: list[int], stem: str = "vgg") -> int:
    """The side of the stem's feature map: each stage halves it (resnet rounds up, pooling down)."""
    for _ in stem_widths:
        side = (side + 1) // 2 if stem == "resnet" else side // 2
    return side


def check_patches(image_size: int, patch_size: int, stem_widths: list[int], stem: str = "vgg") -> None:
    if patch_size < 1:
        raise ConfigError(f"patch_size must be at least 1, got {patch_size}")
    side = feature_side(image_size, stem_widths, stem)
    where = f"the stem's {side}x{side} feature map" if stem_widths else f"image size {image_size}"
    if side < 1 or side % patch_size:
        raise ConfigError(f"{where} is not divisible by patch_size={patch_size}: pick a patch size that divides {side}")


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D positions (N, C): row i uses sinusoidal_table(G, C/2)[i], column j the same table's [j]."""
    table = sinusoidal_table(grid, dim // 2)  # (G, C/2)
    rows = table[:, None, :].expand(grid, grid, dim // 2)  # (G, G, C/2)
    cols = table[None, :, :].expand(grid, grid, dim // 2)  # (G, G, C/2)
    return torch.cat([rows, cols], dim=-1).reshape(grid * grid, dim)  # (N, C)


def interpolate_positions(table: torch.Tensor, grid: int, n_prefix: int) -> torch.Tensor:
    """A learned (1, n_prefix + G0^2, C) table resampled to a G x G grid (bicubic); the class token's row is kept."""
    prefix, patches = table[:, :n_prefix], table[:, n_prefix:]
    g0 = math.isqrt(patches.size(1))
    if g0 == grid:
        return table
    C = table.size(-1)
    patches = patches.reshape(1, g0, g0, C).permute(0, 3, 1, 2)  # (1, C, G0, G0)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)  # (1, C, G, G)
    return torch.cat([prefix, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, C)], dim=1)  # (1, T, C)


def heads(attn: MultiHeadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The self-attention's q, k, v of x (B, T, C), each (B, H, T, D)."""
    B, T, _ = x.shape
    H, D = attn.n_head, attn.head_dim
    return tuple(t.view(B, T, H, D).transpose(1, 2) for t in attn.qkv(x).split((H * D, H * D, H * D), dim=2))


def attention_weights(attn: MultiHeadAttention, x: torch.Tensor, temperature: torch.Tensor | None = None
                      ) -> torch.Tensor:  # fmt: skip
    """Eager reference: softmax(Q K^T / sqrt(D)) of a bidirectional self-attention on x (B, T, C) -> (B, H, T, T);
    with a ``temperature`` (LSA), softmax(mask_diag(Q K^T) / temperature)."""
    q, k, _ = heads(attn, x)
    scores = (q @ k.transpose(-2, -1)).float()  # (B, H, T, T)
    if temperature is None:
        return torch.softmax(scores / math.sqrt(attn.head_dim), dim=-1)
    eye = torch.eye(x.size(1), dtype=torch.bool, device=x.device)
    return torch.softmax(scores.masked_fill(eye, float("-inf")) / temperature.float(), dim=-1)


class PatchEmbedding(nn.Module):
    """(B, C_in, S, S) -> (B, N, C): a P x P convolution with stride P is a linear map of each flattened patch."""

    def __init__(self, in_channels: int, patch_size: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = x.size(-1)
        if x.size(-2) != side or side % self.patch_size:
            raise ConfigError(
                f"a {x.size(-2)}x{side} input is not divisible into {self.patch_size}x{self.patch_size} patches"
            )
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, C, G, G) -> (B, N, C)


class ShiftedPatchEmbedding(nn.Module):
    """SPT (Lee et al. 2021): (B, C_in, S, S) -> [x; 4 diagonal half-patch shifts] -> LN(patches) E -> (B, N, C)."""

    def __init__(self, in_channels: int, patch_size: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.patch_size = patch_size
        n = 5 * in_channels * patch_size**2  # one flattened patch of the 5 stacked images
        self.norm = make_norm("layernorm", n, eps)
        self.proj = nn.Linear(n, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side, P = x.size(-1), self.patch_size
        if x.size(-2) != side or side % P:
            raise ConfigError(f"a {x.size(-2)}x{side} input is not divisible into {P}x{P} patches")
        s = P // 2
        padded = F.pad(x, (s, s, s, s))  # (B, C_in, S + 2s, S + 2s)
        shifts = [padded[..., s + dy : s + dy + side, s + dx : s + dx + side] for dy in (-s, s) for dx in (-s, s)]
        stacked = torch.cat([x, *shifts], dim=1)  # (B, 5 C_in, S, S)
        patches = F.unfold(stacked, P, stride=P).transpose(1, 2)  # (B, N, 5 C_in P P)
        return self.proj(self.norm(patches))  # (B, N, C)


def make_stem(cfg: ViTConfig) -> tuple[nn.Module, int]:
    """The hybrid's convolutional stem from :mod:`genlab.models.cnn` and its output channels."""
    if not cfg.stem:
        return nn.Identity(), cfg.in_channels
    ccfg = CNNConfig(arch=cfg.stem, in_channels=cfg.in_channels, image_size=cfg.image_size,
                     widths=list(cfg.stem_widths), batch_norm=cfg.stem_batch_norm)  # fmt: skip
    c, stages = cfg.in_channels, []
    for w in cfg.stem_widths:
        stages.append(ResidualBlock(ccfg, c, w, stride=2) if cfg.stem == "resnet" else STEMS[cfg.stem](ccfg, c, w))
        c = w
    return nn.Sequential(*stages), c


class Block(nn.Module):
    """Pre-norm encoder block (eqs. 2-3): x + MSA(LN(x)), then x + MLP(LN(x)); no mask, not causal."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        # LSA: a learned temperature tau (init sqrt(D)) and no score of a token against itself
        self.temperature = nn.Parameter(torch.tensor(math.sqrt(cfg.n_embd // cfg.n_head))) if cfg.lsa else None
        self.ln1 = make_norm("layernorm", cfg.n_embd, cfg.norm_eps)
        self.attn = MultiHeadAttention(cfg.n_embd, cfg.n_head, bias=cfg.bias, dropout=cfg.dropout,
                                       backend=cfg.attention, causal=False)  # fmt: skip
        self.ln2 = make_norm("layernorm", cfg.n_embd, cfg.norm_eps)
        self.mlp = make_mlp(cfg.mlp, cfg.n_embd, int(cfg.mlp_ratio * cfg.n_embd), cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + (self.attn(self.ln1(x)) if self.temperature is None else self.lsa(self.ln1(x)))
        return x + self.mlp(self.ln2(x))

    def lsa(self, x: torch.Tensor) -> torch.Tensor:
        """Locality self-attention through the module's backend: queries over tau, scale 1, the diagonal masked."""
        a, (B, T, C) = self.attn, x.shape
        q, k, v = heads(a, x)  # (B, H, T, D) each
        off_diagonal = ~torch.eye(T, dtype=torch.bool, device=x.device)  # (T, T): True = may attend
        p = a.dropout if self.training else 0.0
        y = a.attend(q / self.temperature, k, v, mask=off_diagonal, dropout_p=p, scale=1.0)  # (B, H, T, D)
        return a.resid_dropout(a.proj(y.transpose(1, 2).reshape(B, T, C)))


@dataclass
class ViTOutput:
    logits: torch.Tensor  # (B, K)
    attentions: tuple[torch.Tensor, ...] | None = None  # one (B, H, T, T) per layer
    hidden_states: tuple[torch.Tensor, ...] | None = None  # one (B, T, C) per layer
    grid: int = 0  # G of this input: token 1 + g * G + j (class token first) is patch (g, j)


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        self.stem, c_feat = make_stem(cfg)
        embedding = ShiftedPatchEmbedding if cfg.spt else PatchEmbedding
        self.patch = embedding(c_feat, cfg.patch_size, cfg.n_embd)
        n_prefix = int(cfg.pool == "cls")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.n_embd)) if n_prefix else None
        if cfg.pos == "learned":
            self.pos_emb = nn.Parameter(torch.zeros(1, cfg.n_tokens, cfg.n_embd))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm("layernorm", cfg.n_embd, cfg.norm_eps)
        self.head = nn.Linear(cfg.n_embd, cfg.n_classes)
        self.apply(self._init)
        if cfg.channels_last:
            self.stem.to(memory_format=torch.channels_last)
        if cfg.pos == "learned":
            nn.init.trunc_normal_(self.pos_emb, std=cfg.init_std)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=cfg.init_std)

    def shard_units(self) -> list[nn.Module]:
        """What FSDP shards one group at a time (training/parallel.py): each block."""
        return list(self.blocks)

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if any(m is s for s in self.stem.modules()):
                return  # the CNN stages keep PyTorch's (Kaiming) initialisation
            nn.init.trunc_normal_(m.weight, std=self.config.init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def positions(self, grid: int) -> torch.Tensor:
        """(1, T, C) position embeddings for a G x G grid (interpolated or computed when G differs)."""
        cfg = self.config
        if cfg.pos == "learned":
            return interpolate_positions(self.pos_emb, grid, int(cfg.pool == "cls"))
        table = sincos_2d(grid, cfg.n_embd).to(self.head.weight)  # (N, C)
        if cfg.pool == "cls":
            table = torch.cat([table.new_zeros(1, cfg.n_embd), table])  # the class token gets no position
        return table[None]  # (1, T, C)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Images (B, C_in, S, S) in [0, 1] -> tokens z_0 (B, T, C) (eq. 1) and the grid side G."""
        cfg = self.config
        if x.dim() != 4 or x.size(1) != cfg.in_channels:
            raise ConfigError(f"expected images of shape (B, {cfg.in_channels}, S, S), got {tuple(x.shape)}")
        check_patches(x.size(-1), cfg.patch_size, cfg.stem_widths, cfg.stem)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.patch(self.stem(x))  # (B, N, C)
        grid = math.isqrt(h.size(1))
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.size(0), -1, -1), h], dim=1)  # (B, T, C)
        return self.drop(h + self.positions(grid)), grid

    def forward(self, x: torch.Tensor, attentions: bool = False, hidden_states: bool = False):
        """x: (B, C_in, S, S) -> logits (B, K); with ``attentions`` / ``hidden_states``, a :class:`ViTOutput`.

        Any S whose (stem) feature map divides into patches is accepted: learned positions are
        interpolated to its grid."""
        h, grid = self.embed(x)
        maps, states = [], []
        for block in self.blocks:
            if attentions:
                maps.append(attention_weights(block.attn, block.ln1(h), block.temperature))
            h = block(h)
            if hidden_states:
                states.append(h)
        logits = self.head(self.pool(h))
        if attentions or hidden_states:
            return ViTOutput(logits, tuple(maps) if attentions else None, tuple(states) if hidden_states else None,
                             grid)  # fmt: skip
        return logits

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Eq. 4: LN of the class token, or LN of the mean patch token -> (B, C)."""
        h = self.ln_f(h)
        return h[:, 0] if self.config.pool == "cls" else h.mean(1)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation (B, C) the head reads."""
        h, _ = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.pool(h)


# --- Presets ---------------------------------------------------------------------------
# Published sizes (Table 1 of the paper; Ti and S from Touvron et al. 2020, DeiT, arXiv:2012.12877),
# at 224 x 224 with 16 x 16 patches and 1000 ImageNet classes.


@register("vit-ti-16")
def vit_ti_16() -> ViTConfig:
    """ViT-Ti/16: 12 layers, 192 wide, 3 heads (5.7M parameters)."""
    return ViTConfig(n_layer=12, n_head=3, n_embd=192)


@register("vit-s-16")
def vit_s_16() -> ViTConfig:
    """ViT-S/16: 12 layers, 384 wide, 6 heads (22.1M parameters)."""
    return ViTConfig(n_layer=12, n_head=6, n_embd=384)


@register("vit-b-16")
def vit_b_16() -> ViTConfig:
    """ViT-B/16: 12 layers, 768 wide, 12 heads (86.6M parameters)."""
    return ViTConfig(n_layer=12, n_head=12, n_embd=768)


@register("vit-fashion")
def vit_fashion() -> ViTConfig:
    """CPU shape for 28 x 28 Fashion-MNIST: 4 x 4 patches (a 7 x 7 grid, 49 tokens), 4 layers 64 wide, mean pooling."""
    return ViTConfig(image_size=28, patch_size=4, in_channels=1, n_classes=10, n_layer=4, n_head=4, n_embd=64,
                     mlp_ratio=2.0, pool="mean", norm_eps=1e-6, dropout=0.0)  # fmt: skip


@register("vit-fashion-p7")
def vit_fashion_p7() -> ViTConfig:
    """Cheaper: 7 x 7 patches (a 4 x 4 grid, 16 tokens + class token), 4 layers 96 wide. Eager attention: at
    17 tokens PyTorch's fused CPU kernel (flash SDPA) is the slower one, its backward above all: training ran at
    2,443 images/s against 2,019 with ``attention="sdpa"`` (fwd + bwd + AdamW, batch 128, 2 AVX2 threads)."""
    return ViTConfig(image_size=28, patch_size=7, in_channels=1, n_classes=10, n_layer=4, n_head=4, n_embd=96,
                     mlp_ratio=2.0, norm_eps=1e-6, attention="eager")  # fmt: skip


@register("vit-fashion-sl")
def vit_fashion_sl() -> ViTConfig:
    """``vit-fashion-p7`` with shifted patch tokenization and locality self-attention (Lee et al. 2021): the
    ViT for small datasets; 88.60% against 87.88% validation accuracy after the same 4,000 steps, at 15% fewer
    images/s (one AVX2 thread each)."""
    return dataclasses.replace(vit_fashion_p7(), spt=True, lsa=True)


@register("hybrid-fashion")
def hybrid_fashion() -> ViTConfig:
    """CNN + Transformer: the two VGG stages of ``cnn-fashion`` (16, 32 channels) and a third (64: a
    3 x 3 x 64 map), each cell a token (patch 1, 9 tokens), then 2 Transformer layers 128 wide and mean
    pooling. A short sequence lets the Transformer be wide: 806 images/s of training on 2 AVX2 cores,
    where the 7 x 7 map's 49 tokens at 96 wide ran at 600. The convolutions dominate its step (their
    backward alone 30% of it), and in channels-last memory order they trained at ~1,300 images/s against
    ~1,000 (fwd + bwd + AdamW, batch 128, 2 AVX2 threads); the layout of the input alone gained nothing."""
    return ViTConfig(image_size=28, patch_size=1, in_channels=1, n_classes=10, n_layer=2, n_head=4, n_embd=128,
                     mlp_ratio=2.0, pool="mean", norm_eps=1e-6, stem="vgg", stem_widths=[16, 32, 64],
                     channels_last=True)  # fmt: skip
