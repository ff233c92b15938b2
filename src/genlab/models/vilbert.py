"""ViLBERT: a text stream and a visual stream joined by co-attention, with its single-stream and
question-only baselines: one family, the variant a config field (``streams``).

Lu et al. 2019, "ViLBERT: Pretraining Task-Agnostic Visiolinguistic Representations for
Vision-and-Language Tasks", arXiv:1908.02265.

Axes: B batch, T text tokens ([CLS] words [SEP] padding), N image patches, S = N + 1 visual tokens
([IMG] first), C model width (both streams), H heads, P patch side, C_in image channels, V word
vocabulary, A answers, F fusion width.

Embeddings (the visual features are the patches of a ViT-style patch embedding, :mod:`genlab.models.vit`;
``visual="cnn"``: the cells of a small CNN's feature map, two 3x3 stride-2 convolutions, each
token still covering one P x P image patch)::

    w_0 = LN(E_tok[ids] + E_pos[t] + E_mod[0])                         text,  (B, T, C)
    v_0 = LN([e_IMG; x_p^1 W_p; ...; x_p^N W_p] + E_vpos + E_mod[1])   image, (B, S, C)

``streams="two"`` (the paper's Fig. 2; every TRM is a genlab BERT layer, :class:`genlab.models.bert.Block`)::

    w = TRM_t^{n_text_layers}(w_0),  v = TRM_v^{n_visual_layers}(v_0)
    for each of the n_coattn_layers co-attention layers:
        w' = LN(w + Attn(Q = w W_q, K = v W_k, V = v W_v))              text queries, image keys/values
        v' = LN(v + Attn(Q = v W_q', K = w W_k', V = w W_v', M_pad))    image queries, text keys/values
        w, v = TRM_t(w'), TRM_v(v')                                     each stream's own self-attention + FFN

Both directions read the layer's input states, so neither stream sees the other's update first.
M_pad hides the text padding from the image queries (and from the text stream's own attention);
text padding therefore changes nothing anywhere.

``streams="one"`` (single-stream baseline: VisualBERT / UNITER style): one BERT over the image tokens
followed by the text tokens, ``h = TRM^{n_layer}([v_0; w_0])``, the modality embeddings E_mod telling
them apart and M_pad hiding the text padding. ``streams="text"`` (question-only baseline): the text
stream alone, ``h = TRM^{n_layer}(w_0)``: what the question (its answer priors) gives without the image.

The three are sized to one parameter budget: the baselines take ``n_layer`` BERT layers (0: the
two-stream model's text depth, ``n_text_layers + 2 n_coattn_layers``) and an MLP width ``n_inner``
(0: solved so their parameter count equals the two-stream model's, :func:`budgeted`).

VQA head (the paper's section 3.2: a two-layer MLP on the element-wise product of h_IMG and h_CLS)::

    u_t = ReLU(W_t h_CLS + b_t),  u_v = ReLU(W_v h_IMG + b_v)                     (B, F) each
    z = u_t * u_v   (``text``: z = u_t)
    logits = W_2 LN(GELU(W_1 z + b_1)) + b_2                                     (B, A)

Pretraining heads (the paper's masked multi-modal modelling, section 3.1): masked words through the
BERT masked-LM head tied to E_tok, and masked image regions, whose input patches are zeroed: the
paper regresses a detector's class distribution for each masked region; with patches and no
detector, the region head **regresses the masked patch's pixels** (P P C_in values in [0, 1],
trained with the mean squared error)::

    r_i = W_r2 LN(GELU(W_r1 h_i + b_r1)) + b_r2                               (B, N, P P C_in)

``attention`` picks the backend of every attention (``eager``: the step-by-step reference; ``sdpa``:
the fused kernel), tested equal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.errors import ConfigError
from genlab.layers.attention import ATTENTION, MultiHeadAttention, padding_mask
from genlab.layers.linear import Linear
from genlab.layers.mlp import ACTIVATIONS
from genlab.models.bert import BertConfig, Block, MaskedLMHead
from genlab.models.vit import PatchEmbedding

STREAMS = ("two", "one", "text")
VISUALS = ("patch", "cnn")


@dataclass
class ViLBERTConfig:
    streams: str = "two"  # two (co-attention) | one (single stream) | text (question only)
    vocab_size: int = 64  # question words + specials (genlab.data.easy_vqa.QuestionVocab)
    block_size: int = 32  # longest question, in tokens
    n_answers: int = 13  # A, the answer vocabulary
    image_size: int = 64
    in_channels: int = 3
    patch_size: int = 8
    visual: str = "patch"  # patch: a linear map of each patch's pixels (ViT); cnn: cells of a CNN feature map
    cnn_width: int = 32  # visual=cnn: channels of the two stride-2 convolutions
    n_embd: int = 64  # C, both streams
    n_head: int = 4
    n_text_layers: int = 1  # two streams: text-only BERT layers before the co-attention layers
    n_visual_layers: int = 1  # two streams: visual-only layers before the co-attention layers
    n_coattn_layers: int = 2
    mlp_ratio: int = 4  # the two-stream layers' MLP width is mlp_ratio * C
    n_layer: int = 0  # one / text: BERT layers; 0: n_text_layers + 2 * n_coattn_layers
    n_inner: int = 0  # one / text: MLP width; 0: solved to the two-stream parameter count
    fusion: int = 0  # F, width of the pooled text and image states; 0: 2 C
    dropout: float = 0.1
    attention_dropout: float = 0.1
    mlp: str = "gelu"
    attention: str = "sdpa"
    pretrain_heads: bool = True  # masked-word and masked-region heads (pretraining; unused by VQA)
    init_std: float = 0.02
    norm_eps: float = 1e-12

    def __post_init__(self):
        if self.streams not in STREAMS:
            raise ConfigError(f"streams='{self.streams}' is not one of {list(STREAMS)}")
        if self.attention not in ATTENTION:
            raise ConfigError(f"attention='{self.attention}' is not one of {sorted(ATTENTION)}")
        if self.mlp not in ACTIVATIONS:
            raise ConfigError(f"mlp='{self.mlp}' is not one of {sorted(ACTIVATIONS)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ConfigError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")
        if self.visual not in VISUALS:
            raise ConfigError(f"visual='{self.visual}' is not one of {list(VISUALS)}")
        if self.visual == "cnn" and self.patch_size % 4:
            raise ConfigError(f"visual=cnn cuts a 1/4-size feature map: patch_size={self.patch_size} must divide by 4")
        for name in ("vocab_size", "block_size", "n_answers", "in_channels", "n_embd", "n_head", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("n_text_layers", "n_visual_layers", "n_coattn_layers", "n_layer", "n_inner", "fusion"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.streams == "two" and self.n_coattn_layers < 1:
            raise ConfigError("streams=two needs at least one co-attention layer (n_coattn_layers >= 1)")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def depth(self) -> int:
        """BERT layers of the single-stream and question-only models."""
        return self.n_layer or self.n_text_layers + 2 * self.n_coattn_layers

    @property
    def fusion_dim(self) -> int:
        return self.fusion or 2 * self.n_embd

    def layer_config(self, n_inner: int) -> BertConfig:
        """The genlab BERT layer (post-norm self-attention + MLP) of either stream."""
        return BertConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=1, n_head=self.n_head,
                          n_embd=self.n_embd, n_inner=n_inner, dropout=self.dropout,
                          attention_dropout=self.attention_dropout, mlp=self.mlp, norm_eps=self.norm_eps,
                          attention=self.attention, heads=["mlm"])  # fmt: skip


@dataclass
class ViLBERTOutput:
    logits: torch.Tensor | None = None  # (B, A) answer logits
    text: torch.Tensor | None = None  # (B, T, C) last text states
    visual: torch.Tensor | None = None  # (B, S, C) last visual states, [IMG] first (not for ``text``)
    mlm_logits: torch.Tensor | None = None  # (B, T, V) masked words
    region: torch.Tensor | None = None  # (B, N, P P C_in) predicted pixels of every patch


class CoAttention(nn.Module):
    """One co-attention layer: both streams' queries attend to the other stream's keys and values
    (residual + LayerNorm), then each stream's own BERT layer (self-attention + FFN)."""

    def __init__(self, cfg: ViLBERTConfig):
        super().__init__()
        C, H = cfg.n_embd, cfg.n_head
        kw = {"dropout": cfg.dropout, "attn_dropout": cfg.attention_dropout, "backend": cfg.attention, "cross": True}
        self.text_from_image = MultiHeadAttention(C, H, **kw)
        self.image_from_text = MultiHeadAttention(C, H, **kw)
        self.text_norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.image_norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        layer = cfg.layer_config(cfg.mlp_ratio * C)
        self.text_layer, self.image_layer = Block(layer), Block(layer)

    def forward(
        self, w: torch.Tensor, v: torch.Tensor, text_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """w (B, T, C), v (B, S, C), text_mask (B, 1, 1, T) True = a real token (None: no padding)."""
        w2 = self.text_norm(w + self.text_from_image(w, context=v))  # (B, T, C): every image token is real
        v2 = self.image_norm(v + self.image_from_text(v, context=w, mask=text_mask))  # (B, S, C)
        return self.text_layer(w2, mask=text_mask), self.image_layer(v2)


class ConvStem(nn.Module):
    """visual=cnn: (B, C_in, S, S) -> (B, W, S/4, S/4), two 3x3 stride-2 convolutions with GELU; the
    patch embedding then takes (P/4) x (P/4) cells of this map, so token i still covers image patch i."""

    def __init__(self, cfg: ViLBERTConfig):
        super().__init__()
        W = cfg.cnn_width
        self.conv1 = nn.Conv2d(cfg.in_channels, W, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(W, W, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.conv2(F.gelu(self.conv1(x))))  # (B, W, S/4, S/4)


class RegionHead(nn.Module):
    """Masked-region regression: r = W_2 LN(GELU(W_1 h + b_1)) + b_2, (..., C) -> (..., P P C_in)."""

    def __init__(self, cfg: ViLBERTConfig):
        super().__init__()
        C = cfg.n_embd
        self.dense = Linear(C, C)
        self.norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.out = Linear(C, cfg.patch_size**2 * cfg.in_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(F.gelu(self.dense(h))))


class VQAHead(nn.Module):
    """logits = W_2 LN(GELU(W_1 z)), z = ReLU(W_t h_CLS) * ReLU(W_v h_IMG) (z = ReLU(W_t h_CLS) without an image)."""

    def __init__(self, cfg: ViLBERTConfig):
        super().__init__()
        C, Fd = cfg.n_embd, cfg.fusion_dim
        self.text_pool = Linear(C, Fd)
        self.image_pool = Linear(C, Fd) if cfg.streams != "text" else None
        self.dense = Linear(Fd, 2 * C)
        self.norm = nn.LayerNorm(2 * C, eps=cfg.norm_eps)
        self.out = Linear(2 * C, cfg.n_answers)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h_cls: torch.Tensor, h_img: torch.Tensor | None) -> torch.Tensor:
        z = F.relu(self.text_pool(h_cls))  # (B, F)
        if self.image_pool is not None:
            z = z * F.relu(self.image_pool(h_img))  # (B, F): the element-wise product of the two streams
        return self.out(self.norm(F.gelu(self.dense(self.drop(z)))))  # (B, A)


class ViLBERT(nn.Module):
    def __init__(self, cfg: ViLBERTConfig):
        super().__init__()
        if cfg.streams != "two" and cfg.n_inner == 0:
            cfg = budgeted(cfg)
        self.config = cfg
        C = cfg.n_embd
        self.tok_emb = nn.Embedding(cfg.vocab_size, C, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.block_size, C)
        self.text_norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.streams != "text":
            if cfg.visual == "cnn":
                self.stem = ConvStem(cfg)
                self.patch = PatchEmbedding(cfg.cnn_width, cfg.patch_size // 4, C)
            else:
                self.stem = nn.Identity()
                self.patch = PatchEmbedding(cfg.in_channels, cfg.patch_size, C)
            self.img_token = nn.Parameter(torch.zeros(1, 1, C))  # e_IMG
            self.vpos_emb = nn.Parameter(torch.zeros(1, cfg.n_patches + 1, C))  # E_vpos
            self.image_norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        if cfg.streams == "one":
            self.mod_emb = nn.Embedding(2, C)  # E_mod: 0 text, 1 image
        if cfg.streams == "two":
            layer = cfg.layer_config(cfg.mlp_ratio * C)
            self.text_layers = nn.ModuleList(Block(layer) for _ in range(cfg.n_text_layers))
            self.image_layers = nn.ModuleList(Block(layer) for _ in range(cfg.n_visual_layers))
            self.coattn = nn.ModuleList(CoAttention(cfg) for _ in range(cfg.n_coattn_layers))
        else:
            layer = cfg.layer_config(cfg.n_inner)
            self.layers = nn.ModuleList(Block(layer) for _ in range(cfg.depth))
        self.vqa = VQAHead(cfg)
        if cfg.pretrain_heads:
            self.mlm = MaskedLMHead(cfg.layer_config(cfg.mlp_ratio * C))
            self.region = RegionHead(cfg) if cfg.streams != "text" else None
        self.reset_parameters()
        if cfg.pretrain_heads:
            self.mlm.decoder.weight = self.tok_emb.weight  # tied, as in BERT

    def reset_parameters(self) -> None:
        """BERT initialisation: weights N(0, init_std), biases 0, LayerNorm 1 / 0, the padding row 0."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv2d)):
                nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.config.streams != "text":
            nn.init.normal_(self.img_token, 0.0, std)
            nn.init.normal_(self.vpos_emb, 0.0, std)
        with torch.no_grad():
            self.tok_emb.weight[0].zero_()

    # --- embeddings ----------------------------------------------------------------------

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> w_0 (B, T, C)."""
        T = ids.size(1)
        if self.config.block_size < T:
            raise ValueError(f"a question of {T} tokens exceeds the position table of {self.config.block_size}")
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))  # (B, T, C)
        if self.config.streams == "one":
            x = x + self.mod_emb.weight[0]
        return self.drop(self.text_norm(x))

    def embed_image(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, C_in, S, S) in [0, 1], patch_mask (B, N) True = masked (pixels zeroed) -> v_0 (B, N + 1, C)."""
        cfg = self.config
        if images.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"images of shape {tuple(images.shape[1:])} do not fit this model's "
                f"({cfg.in_channels}, {cfg.image_size}, {cfg.image_size})"
            )
        if patch_mask is not None:
            images = mask_patches(images, patch_mask, cfg.patch_size)
        p = self.patch(self.stem(images))  # (B, N, C)
        x = torch.cat([self.img_token.expand(p.size(0), -1, -1), p], dim=1) + self.vpos_emb  # (B, S, C)
        if cfg.streams == "one":
            x = x + self.mod_emb.weight[1]
        return self.drop(self.image_norm(x))

    # --- the three bodies ----------------------------------------------------------------

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        patch_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (text states (B, T, C), visual states (B, S, C) or None for ``text``)."""
        cfg = self.config
        w = self.embed_text(input_ids)
        pad = None if attention_mask is None else padding_mask(attention_mask)  # (B, 1, 1, T)
        if cfg.streams == "text":
            for layer in self.layers:
                w = layer(w, mask=pad)
            return w, None
        if images is None:
            raise ValueError(f"a streams={cfg.streams} model reads an image with each question")
        v = self.embed_image(images, patch_mask)
        if cfg.streams == "one":
            S = v.size(1)
            h = torch.cat([v, w], dim=1)  # (B, S + T, C): image tokens, then text tokens
            mask = None
            if attention_mask is not None:
                real = torch.cat([attention_mask.new_ones(attention_mask.size(0), S), attention_mask], dim=1)
                mask = padding_mask(real)  # (B, 1, 1, S + T)
            for layer in self.layers:
                h = layer(h, mask=mask)
            return h[:, S:], h[:, :S]
        for layer in self.text_layers:
            w = layer(w, mask=pad)
        for layer in self.image_layers:
            v = layer(v)
        for co in self.coattn:
            w, v = co(w, v, pad)
        return w, v

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        patch_mask: torch.Tensor | None = None,
        heads: tuple[str, ...] = ("vqa",),
    ) -> ViLBERTOutput:
        """input_ids (B, T) ([CLS] first), attention_mask (B, T) 1 = token, images (B, C_in, S, S);
        ``heads`` from vqa, mlm, region (the last two need ``pretrain_heads``)."""
        w, v = self.encode(input_ids, attention_mask, images, patch_mask)
        out = ViLBERTOutput(text=w, visual=v)
        if "vqa" in heads:
            out.logits = self.vqa(w[:, 0], None if v is None else v[:, 0])
        if ("mlm" in heads or "region" in heads) and not self.config.pretrain_heads:
            raise ValueError("this model has no pretraining heads (pretrain_heads=false)")
        if "mlm" in heads:
            out.mlm_logits = self.mlm(w)
        if "region" in heads:
            if self.region is None:
                raise ValueError("the question-only model has no image, so no masked-region head")
            out.region = self.region(v[:, 1:])  # (B, N, P P C_in)
        return out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def mask_patches(images: torch.Tensor, patch_mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """images (B, C_in, S, S) with the pixels of the patches where patch_mask (B, N) is True set to 0."""
    B, C, S, _ = images.shape
    G, P = S // patch_size, patch_size
    keep = (~patch_mask).to(images.dtype).view(B, 1, G, 1, G, 1)  # (B, 1, G, 1, G, 1)
    return (images.view(B, C, G, P, G, P) * keep).view(B, C, S, S)


def patch_pixels(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C_in, S, S) -> (B, N, P P C_in): each patch's pixels, patches in row-major order (the
    order of the patch embedding's tokens), the masked-region targets."""
    B, C, S, _ = images.shape
    G, P = S // patch_size, patch_size
    x = images.view(B, C, G, P, G, P).permute(0, 2, 4, 3, 5, 1)  # (B, G, G, P, P, C)
    return x.reshape(B, G * G, P * P * C)


def count_params(cfg: ViLBERTConfig, heads: bool = False) -> int:
    """Parameters of the model ``cfg`` builds (on the meta device: no memory); without the
    pretraining heads unless ``heads`` (the VQA budget)."""
    with torch.device("meta"):
        return ViLBERT(dataclasses.replace(cfg, pretrain_heads=heads)).num_params()


def budgeted(cfg: ViLBERTConfig) -> ViLBERTConfig:
    """A single-stream or question-only config with ``n_inner`` solved so that its parameter count
    (without pretraining heads) is the two-stream model's: the count is linear in the MLP width."""
    if cfg.streams == "two":
        return cfg
    target = count_params(dataclasses.replace(cfg, streams="two"))
    a, b = (count_params(dataclasses.replace(cfg, n_inner=k)) for k in (64, 128))
    per = (b - a) / 64  # parameters per unit of MLP width
    inner = round(64 + (target - a) / per)
    if inner < 1:
        raise ConfigError(
            f"a streams={cfg.streams} model of {cfg.depth} layers is larger than the two-stream budget of "
            f"{target:,} parameters at any MLP width: set model.n_layer lower"
        )
    return dataclasses.replace(cfg, n_inner=inner)
