"""Time-series forecasters: RNN + Transformer hybrids, and an LSTM or a Transformer alone, one family.

Axes: B batch, L context window (time steps seen), F horizon (steps forecast), C model dim,
O outputs per step (1 point, 2 Gaussian, Q quantiles).

The model reads the last L values of a (scaled) series, x_{t-L+1..t}, and forecasts the next F,
y_{t+1..t+F}, all at once (a direct multi-horizon forecast). It never reads anything after t:
the window is all it is given.

    e_s   = x_s w_in + b_in                                  each value to a C-vector
    arch "rnn-transformer" (default):  h = Transformer(RNN(e) + P)   the RNN's states, related by attention
    arch "transformer-rnn":            h = RNN(Transformer(e + P))   the reverse order
    arch "rnn":                        h = RNN(e)                    an LSTM (or GRU) alone
    arch "transformer":                h = Transformer(e + P)        a Transformer alone
    out   = W_out h_t                                        the last state -> (F, O)

With ``relative`` the model reads x_s - x_t and its forecasts are offsets from x_t (the window's
last value), so a trend that leaves the training span's range (CO2) can still be followed.
P are learned positions over the window; the Transformer layers are pre-norm, bidirectional
inside the window (Vaswani et al. 2017, arXiv:1706.03762), built from ``layers/``. The RNN is an
LSTM (Hochreiter & Schmidhuber 1997) or a GRU (Cho et al. 2014, arXiv:1406.1078). Pairing a
recurrent encoder with attention follows e.g. Lim et al. 2019 (Temporal Fusion Transformer,
arXiv:1912.09363), whose local LSTM layer feeds self-attention.

Outputs (``output``), each with its loss in :func:`forecast_loss`:

- ``point``: the mean, trained with the squared error;
- ``gaussian``: mean mu and log-scale; loss the Gaussian negative log-likelihood
  -log N(y; mu, sigma^2) = log sigma + (y - mu)^2 / (2 sigma^2) + const;
- ``quantile``: Q increasing quantile levels tau (the first output plus cumulative softplus steps, so
  they never cross), trained with the pinball loss
  rho_tau(y - q) = max(tau (y - q), (tau - 1)(y - q)) (Koenker & Bassett 1978).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.errors import ConfigError
from genlab.core.registry import register
from genlab.layers.attention import ATTENTION, MultiHeadAttention
from genlab.layers.mlp import make_mlp
from genlab.layers.norm import make_norm

ARCHS = ["rnn-transformer", "transformer-rnn", "rnn", "transformer"]
RNNS = {"lstm": nn.LSTM, "gru": nn.GRU}
OUTPUTS = ["point", "gaussian", "quantile"]
Z90 = 1.6448536269514722  # the standard normal's 95th percentile: a 90% central interval is mu +- Z90 sigma


@dataclass
class ForecastConfig:
    window: int = 48  # L: past values the model reads
    horizon: int = 12  # F: future values it forecasts
    arch: str = "rnn-transformer"
    rnn: str = "lstm"  # lstm | gru
    rnn_layers: int = 1
    n_layer: int = 2  # Transformer layers
    n_head: int = 4
    n_embd: int = 64
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    attention: str = "sdpa"
    output: str = "gaussian"
    quantiles: list[float] = field(default_factory=lambda: [0.05, 0.5, 0.95])
    relative: bool = False  # read x - x_t and forecast relative to x_t (the window's last value): trends extrapolate

    def __post_init__(self):
        checks = {"arch": ARCHS, "rnn": sorted(RNNS), "output": OUTPUTS, "attention": sorted(ATTENTION)}
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}='{getattr(self, name)}' is not one of {valid}")
        if self.horizon < 1:
            raise ConfigError(f"horizon={self.horizon} must be at least 1 (steps to forecast)")
        if self.window < 1:
            raise ConfigError(f"window={self.window} must be at least 1 (past steps to read)")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        q = self.quantiles
        if self.output == "quantile" and (not q or not all(a < b for a, b in zip([0.0, *q], [*q, 1.0]))):
            raise ConfigError(f"quantiles must be increasing levels strictly between 0 and 1, got {q}")

    @property
    def n_out(self) -> int:
        return {"point": 1, "gaussian": 2, "quantile": len(self.quantiles)}[self.output]

    @property
    def uses_rnn(self) -> bool:
        return self.arch != "transformer"

    @property
    def uses_transformer(self) -> bool:
        return self.arch != "rnn"


class Block(nn.Module):
    """Pre-norm encoder block: x + MSA(LN(x)), then x + MLP(LN(x)), bidirectional over the window."""

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        self.ln1 = make_norm("layernorm", cfg.n_embd)
        self.attn = MultiHeadAttention(cfg.n_embd, cfg.n_head, dropout=cfg.dropout, backend=cfg.attention,
                                       causal=False)  # fmt: skip
        self.ln2 = make_norm("layernorm", cfg.n_embd)
        self.mlp = make_mlp("gelu", cfg.n_embd, int(cfg.mlp_ratio * cfg.n_embd), dropout=cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Forecaster(nn.Module):
    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        self.config = cfg
        C = cfg.n_embd
        self.inp = nn.Linear(1, C)
        self.rnn = (
            RNNS[cfg.rnn](
                C, C, num_layers=cfg.rnn_layers, batch_first=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0
            )  # fmt: skip
            if cfg.uses_rnn
            else None
        )
        if cfg.uses_transformer:
            self.pos_emb = nn.Parameter(torch.randn(1, cfg.window, C) * 0.02)
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
            self.ln_f = make_norm("layernorm", C)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(C, cfg.horizon * cfg.n_out)

    def _transformer(self, h: torch.Tensor) -> torch.Tensor:
        h = self.drop(h + self.pos_emb)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L) scaled past values -> (B, F, O): the point, (mu, log sigma) or the quantiles."""
        cfg = self.config
        if x.dim() != 2 or x.size(1) != cfg.window:
            raise ConfigError(f"expected windows of shape (B, {cfg.window}), got {tuple(x.shape)}")
        last = x[:, -1:, None] if cfg.relative else x.new_zeros(1, 1, 1)  # (B, 1, 1)
        h = self.inp(x[..., None] - last)  # (B, L, C)
        if cfg.arch == "rnn-transformer":
            h = self._transformer(self.rnn(h)[0])
        elif cfg.arch == "transformer-rnn":
            h = self.rnn(self._transformer(h))[0]
        elif cfg.arch == "rnn":
            h = self.rnn(h)[0]
        else:
            h = self._transformer(h)
        out = self.head(self.drop(h[:, -1])).view(x.size(0), cfg.horizon, cfg.n_out)  # (B, F, O)
        if cfg.output == "quantile":  # q_1 + cumulative softplus steps: the quantiles never cross
            out = torch.cat([out[..., :1], out[..., :1] + F.softplus(out[..., 1:]).cumsum(-1)], dim=-1)
        if cfg.output == "gaussian":  # the location moves with x_t, the log-scale does not
            return torch.cat([out[..., :1] + last, out[..., 1:]], dim=-1)
        return out + last

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Point forecast and a central interval, each (B, F): ``mean``, ``lower``, ``upper``
        (Gaussian: mu +- 1.645 sigma, a 90% interval; quantiles: the lowest and highest level; point: none)."""
        out = self.forward(x)
        cfg = self.config
        if cfg.output == "point":
            return {"mean": out[..., 0], "lower": out[..., 0], "upper": out[..., 0]}
        if cfg.output == "gaussian":
            mu, sigma = out[..., 0], out[..., 1].exp()
            return {"mean": mu, "lower": mu - Z90 * sigma, "upper": mu + Z90 * sigma}
        mid = min(range(len(cfg.quantiles)), key=lambda i: abs(cfg.quantiles[i] - 0.5))  # the median's level
        return {"mean": out[..., mid], "lower": out[..., 0], "upper": out[..., -1]}


def forecast_loss(cfg: ForecastConfig, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean loss of predictions ``out`` (B, F, O) against the truth ``y`` (B, F) (module docstring)."""
    if cfg.output == "point":
        return F.mse_loss(out[..., 0], y)
    if cfg.output == "gaussian":
        mu, log_sigma = out[..., 0], out[..., 1].clamp(-7.0, 7.0)
        return (log_sigma + 0.5 * ((y - mu) / log_sigma.exp()).square()).mean()
    tau = torch.tensor(cfg.quantiles, dtype=out.dtype, device=out.device)  # (Q,)
    err = y[..., None] - out  # (B, F, Q)
    return torch.maximum(tau * err, (tau - 1) * err).mean()


# --- Presets ---------------------------------------------------------------------------


@register("forecast-hybrid")
def forecast_hybrid() -> ForecastConfig:
    """LSTM encoder (64 units) over a 48-step window feeding 2 Transformer layers; Gaussian output."""
    return ForecastConfig()


@register("forecast-transformer")
def forecast_transformer() -> ForecastConfig:
    """The Transformer alone: 2 layers 64 wide over the embedded window."""
    return ForecastConfig(arch="transformer")


@register("forecast-lstm")
def forecast_lstm() -> ForecastConfig:
    """An LSTM alone: 2 layers of 64 units."""
    return ForecastConfig(arch="rnn", rnn_layers=2)
