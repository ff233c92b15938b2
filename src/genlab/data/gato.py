"""Gato's tokenisation: text, images, continuous observations and discrete actions in one sequence.

Reed et al. 2022, "A Generalist Agent", arXiv:2205.06175, sec. 2.1.

Axes: B batch, T sequence length, N patches per image, P patch side, O observation size.

One flat sequence of integer ids per example over one token space (:class:`TokenLayout`)::

    [0, V)                      text: the byte-level BPE ids (V = the tokenizer's vocabulary)
    [V, V + bins)               continuous values: mu-law encoded, then discretised into ``bins`` bins
    V + bins                    '|': the separator between an observation and its action
    V + bins + 1                an image patch slot: the model puts a patch's embedding there
    V + bins + 2 + ...          discrete actions: each environment its own n_actions ids, in ``envs`` order

Continuous values (the paper's eq. for mu-law companding, mu = 100, M = 256)::

    F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1)        clipped to [-1, 1]
    bin(x) = floor((F(x) + 1) / 2 * bins)                  in [0, bins)

and back: the bin's centre through the inverse, sgn(y) ((M mu + 1)^|y| - 1) / mu. The round trip
is exact up to half a bin in F-space (tested).

A control episode of T steps is, per step, the observation's O value tokens, the separator and the
action token (Gato's "observation, separator, action" layout); an image is N patch slots (its
patches, row-major; the model adds a learned position within the image); a captioning or
classification example is the image's slots followed by the text of the prompt and the answer.

The loss is on text and action targets only: :func:`targets` keeps the next token as the target
where it is text or an action, -100 (ignored) where it is an observation value, a separator, an
image slot or padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from genlab.core.errors import DataError

IGNORE = -100  # the target of a position the loss skips (cross_entropy's ignore_index)
MODALITIES = ("text", "image", "control")


@dataclass
class TokenLayout:
    """The token space of a Gato run (module docstring): what every id means."""

    text_vocab: int = 0  # the BPE tokenizer's vocabulary size (ids [0, text_vocab))
    bins: int = 1024
    mu: float = 100.0
    M: float = 256.0
    envs: dict[str, list[int]] = field(default_factory=dict)  # env id -> [observation size, actions]
    image_size: int = 32  # images are fitted to image_size x image_size, 3 channels
    patch_size: int = 8
    images: bool = True  # whether the run has image slots (an image task)
    text: bool = True  # whether the run was trained on any text

    def __post_init__(self):
        if self.bins < 2 or self.mu <= 0 or self.M <= 0:
            raise DataError(f"layout needs bins >= 2, mu > 0 and M > 0, got {self.bins}, {self.mu}, {self.M}")
        if self.image_size % self.patch_size:
            raise DataError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")
        for env, dims in self.envs.items():
            if len(dims) != 2 or min(dims) < 1:
                raise DataError(f"layout.envs['{env}'] must be [observation size, actions], got {dims}")

    @property
    def obs_offset(self) -> int:
        return self.text_vocab

    @property
    def sep_id(self) -> int:
        return self.text_vocab + self.bins

    @property
    def image_id(self) -> int:
        return self.sep_id + 1

    def action_offset(self, env: str) -> int:
        """The id of action 0 of ``env``; a one-line error naming the known envs otherwise."""
        self.check_env(env)
        offset = self.image_id + 1
        for name, (_, n) in self.envs.items():
            if name == env:
                return offset
            offset += n
        raise AssertionError(env)

    @property
    def vocab_size(self) -> int:
        return self.image_id + 1 + sum(n for _, n in self.envs.values())

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        return 3 * self.patch_size**2

    def step_tokens(self, env: str) -> int:
        """Tokens of one control step: O observation values, the separator, the action."""
        self.check_env(env)
        return self.envs[env][0] + 2

    def modalities(self) -> list[str]:
        """What the run was trained on: 'text', 'image' and its environment ids."""
        return [m for m, on in (("text", self.text), ("image", self.images)) if on] + list(self.envs)

    def check_modality(self, modality: str) -> None:
        """A one-line error for a prompt of a modality the run was not trained on."""
        if modality in MODALITIES[:2]:
            if not getattr(self, "images" if modality == "image" else "text"):
                raise DataError(
                    f"this Gato run was not trained on {modality} inputs; it knows: {', '.join(self.modalities())}"
                )
            return
        self.check_env(modality)

    def check_env(self, env: str) -> None:
        if env not in self.envs:
            raise DataError(f"this Gato run has no action tokens for '{env}'; it knows: {', '.join(self.modalities())}")

    def is_action(self, ids: np.ndarray) -> np.ndarray:
        return (ids > self.image_id) & (ids < self.vocab_size)

    def is_target(self, ids: np.ndarray) -> np.ndarray:
        """Text or action ids: the positions the loss is on."""
        return (ids >= 0) & (ids < self.text_vocab) | self.is_action(ids)


# --- continuous values: mu-law and bins -----------------------------------------------------


def mu_law(x: np.ndarray, mu: float = 100.0, M: float = 256.0) -> np.ndarray:
    """F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1), clipped to [-1, 1] (Gato, sec. 2.1)."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.sign(x) * np.log1p(np.abs(x) * mu) / math.log1p(M * mu), -1.0, 1.0)


def inverse_mu_law(y: np.ndarray, mu: float = 100.0, M: float = 256.0) -> np.ndarray:
    """F^-1(y) = sgn(y) ((M mu + 1)^|y| - 1) / mu."""
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * np.expm1(np.abs(y) * math.log1p(M * mu)) / mu


def encode_values(x: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Continuous values -> ids in [obs_offset, obs_offset + bins) (int64, same shape)."""
    y = mu_law(x, layout.mu, layout.M)
    b = np.clip(np.floor((y + 1.0) / 2.0 * layout.bins), 0, layout.bins - 1).astype(np.int64)
    return b + layout.obs_offset


def decode_values(ids: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Value ids -> the continuous value at the centre of each bin."""
    b = np.asarray(ids, dtype=np.int64) - layout.obs_offset
    if b.size and (b.min() < 0 or b.max() >= layout.bins):
        raise DataError(f"ids outside the value range [{layout.obs_offset}, {layout.obs_offset + layout.bins})")
    y = (b + 0.5) / layout.bins * 2.0 - 1.0
    return inverse_mu_law(y, layout.mu, layout.M)


# --- control episodes ----------------------------------------------------------------------


def episode_tokens(obs: np.ndarray, actions: np.ndarray, layout: TokenLayout, env: str) -> np.ndarray:
    """(T, O) observations and (T,) actions -> T * (O + 2) ids: [obs values, '|', action] per step."""
    obs, actions = np.asarray(obs), np.asarray(actions, dtype=np.int64)
    layout.check_env(env)
    dim, n = layout.envs[env]
    if obs.ndim != 2 or obs.shape[1] != dim or actions.shape != (obs.shape[0],):
        raise DataError(f"{env}: expected observations (T, {dim}) and actions (T,), got {obs.shape}, {actions.shape}")
    if actions.size and (actions.min() < 0 or actions.max() >= n):
        raise DataError(f"{env} has {n} actions, got action {int(actions.max())}")
    T = obs.shape[0]
    out = np.empty((T, dim + 2), dtype=np.int64)  # (T, O + 2)
    out[:, :dim] = encode_values(obs, layout)
    out[:, dim] = layout.sep_id
    out[:, dim + 1] = actions + layout.action_offset(env)
    return out.reshape(-1)


def observation_tokens(obs: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """(B, O) observations -> (B, O + 1) ids: the values and the separator (what an agent feeds before acting)."""
    vals = encode_values(obs, layout)  # (B, O)
    return np.concatenate([vals, np.full((len(vals), 1), layout.sep_id, dtype=np.int64)], axis=1)


def targets(ids: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """The next-token targets of ``ids`` (..., T): ids[t + 1] where it is text or an action, else IGNORE.
    The last position has no next token and is IGNORE (callers that train on ids[:-1] drop it)."""
    ids = np.asarray(ids, dtype=np.int64)
    nxt = np.full_like(ids, IGNORE)
    nxt[..., :-1] = ids[..., 1:]
    return np.where(layout.is_target(nxt), nxt, IGNORE)


def render_layout(ids: Sequence[int], layout: TokenLayout, decode: Callable[[list[int]], str] | None = None) -> str:
    """A readable line per group of ids: ``text``, ``image`` slots, an observation ``obs``, ``|``, an ``act``ion."""
    ids = [int(i) for i in ids]
    envs = {}
    for env in layout.envs:
        off = layout.action_offset(env)
        for a in range(layout.envs[env][1]):
            envs[off + a] = f"{env}:{a}"
    lines, i = [], 0
    while i < len(ids):
        t = ids[i]
        j = i
        if t < layout.text_vocab:
            while j < len(ids) and ids[j] < layout.text_vocab:
                j += 1
            text = f" {decode(ids[i:j])!r}" if decode else ""
            lines.append(f"text   {ids[i:j]}{text}")
        elif t < layout.sep_id:
            while j < len(ids) and layout.obs_offset <= ids[j] < layout.sep_id:
                j += 1
            vals = ", ".join(f"{v:.3g}" for v in decode_values(np.array(ids[i:j]), layout))
            lines.append(f"obs    {ids[i:j]} ~ [{vals}]")
        elif t == layout.sep_id:
            j = i + 1
            lines.append(f"|      [{t}]")
        elif t == layout.image_id:
            while j < len(ids) and ids[j] == layout.image_id:
                j += 1
            lines.append(f"image  {j - i} patch slots of id {t}")
        else:
            j = i + 1
            lines.append(f"act    [{t}] {envs.get(t, '?')}")
        i = j
    return "\n".join(lines)


# --- images ---------------------------------------------------------------------------------


def image_patches(image: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """One uint8 image, (H, W) grayscale or (H, W, 3) RGB, -> float32 patches (N, 3 P P), row-major.

    The image is fitted to image_size (zero-padded when smaller, e.g. Fashion-MNIST's 28 to 32;
    averaged over k x k blocks when k times larger), grayscale repeated over 3 channels; pixel
    values are scaled to [-1, 1] and divided by sqrt(P), as in the paper (sec. 2.1)."""
    x = np.asarray(image)
    if x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] != x.shape[1]:
        raise DataError(f"an image must be square (S, S) or (S, S, 3), got shape {x.shape}")
    S, size, P = x.shape[0], layout.image_size, layout.patch_size
    x = x.astype(np.float32) / 255.0
    if size > S:
        lo = (size - S) // 2
        x = np.pad(x, ((lo, size - S - lo), (lo, size - S - lo), (0, 0)))
    elif size < S:
        if S % size:
            raise DataError(f"a {S}x{S} image does not fit image_size {size}: its side must divide by {size}")
        k = S // size
        x = x.reshape(size, k, size, k, 3).mean(axis=(1, 3))  # (S, S, 3)
    x = (x * 2.0 - 1.0) / math.sqrt(P)
    G = size // P
    x = x.reshape(G, P, G, P, 3).transpose(0, 2, 4, 1, 3)  # (G, G, 3, P, P)
    return np.ascontiguousarray(x.reshape(G * G, 3 * P * P))  # (N, 3 P P)


def image_text_example(
    image: np.ndarray, prompt: list[int], answer: list[int], layout: TokenLayout
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, patches): N image slots, the prompt's text ids, the answer's (ending with the end-of-text id)."""
    ids = np.array([layout.image_id] * layout.n_patches + list(prompt) + list(answer), dtype=np.int64)
    return ids, image_patches(image, layout)


def collate(examples: list[tuple[np.ndarray, np.ndarray | None]], layout: TokenLayout, pad_id: int) -> dict:
    """Examples (ids (T_i,), patches (N, D) or None) -> a training batch: ``ids`` and ``targets``
    (B, T) int64, right-padded with ``pad_id`` (targets IGNORE there), and ``patches`` (B, N, D) when
    the examples hold images. Training predicts targets[:, t] from ids[:, :t + 1]."""
    T = max(len(ids) for ids, _ in examples)
    B = len(examples)
    ids = np.full((B, T), pad_id, dtype=np.int64)
    tgt = np.full((B, T), IGNORE, dtype=np.int64)
    for b, (row, _) in enumerate(examples):
        ids[b, : len(row)] = row
        tgt[b, : len(row)] = targets(row, layout)
    out = {"ids": torch.from_numpy(ids), "targets": torch.from_numpy(tgt)}
    if examples[0][1] is not None:
        out["patches"] = torch.from_numpy(np.stack([p for _, p in examples]))  # (B, N, D)
    return out


__all__ = [
    "IGNORE",
    "MODALITIES",
    "TokenLayout",
    "collate",
    "decode_values",
    "encode_values",
    "episode_tokens",
    "image_patches",
    "image_text_example",
    "inverse_mu_law",
    "mu_law",
    "observation_tokens",
    "render_layout",
    "targets",
]
