"""Mixture of Experts: a router, experts as batched FFNs, balancing losses, shared experts.

Axes: N tokens (the batch and time axes flattened), C model dim, E routed experts,
K experts per token (top-k), H an expert's hidden width, M routed token-slots (N K,
fewer when a capacity drops some).

A sparsely-gated MoE layer (Shazeer et al. 2017, arXiv:1701.06538) replaces one FFN by E
expert FFNs and a router that sends each token to K of them:

    s = score(x W_r^T)                        (N, E)   softmax, or sigmoid (DeepSeek-V3)
    idx = top-K(s + b)                        (N, K)   b: DeepSeek-V3's balancing bias, 0 by default
    g = s[idx] / sum_k s[idx]                 (N, K)   the K gates, renormalised (``normalize``)
    y = sum_k g_k FFN_{idx_k}(x) + FFN_shared(x)

Each expert FFN is the same kind as a dense one (GELU/ReLU or SwiGLU, see layers/mlp.py).
Their weights are stacked: ``experts.fc.weight`` is (E, C, H) (2H for SwiGLU: gate then
up) and ``experts.proj.weight`` (E, H, C), so an expert computes ``x @ W[e]``.

The fast path sorts the N K token-slots by expert and runs one matrix product per expert
group: a kernel of :data:`GROUPED_LINEAR` (one matmul per group, a padded ``bmm``, or
torch's ``grouped_mm``; :func:`auto_kernel` picks one); no Python loop over tokens.
:func:`reference_moe` beside it loops over experts and sends each token through its chosen
experts, tested equal, forward and backward.

Capacity (Switch Transformer, Fedus et al. 2021, arXiv:2101.03961): with a capacity factor
f > 0 each expert takes at most ceil(f N K / E) token-slots per forward; the slots beyond
it are dropped (they add nothing; the residual carries the token on). First choices come
before second choices, and within a choice earlier tokens first (GShard, Lepikhin et al.
2020, arXiv:2006.16668). f = 0 is dropless. Capacity applies in training only: evaluation
and generation are dropless, so a row's output never depends on the rest of its batch.

Balancing, stored as ``aux_loss`` after each forward (already weighted by its coefficients):

    Switch auxiliary loss   E * sum_i f_i P_i      f_i = share of the N K slots routed to i,
                                                   P_i = mean routing probability of i
                            (= 1 when balanced, E at worst; Fedus et al. 2021, eq. 4)
    router z-loss           (1/N) sum_n (log sum_i exp(z_ni))^2    (ST-MoE, Zoph et al. 2022,
                                                   arXiv:2202.08906, eq. 5)

Auxiliary-loss-free balancing (DeepSeek-V3, arXiv:2412.19437, section 2.1.2): a per-expert
bias b enters the top-K choice only (not the gates), added to the sigmoid scores as in the
paper, or to the logits under softmax (top-K of z + b = top-K of softmax(z + b)); after each training forward it moves
outside autograd by a sign rule, b_i <- b_i + u sign(mean_j c_j - c_i), with c the slot
counts of that forward: overloaded experts become less attractive, idle ones more.

DeepSeekMoE (Dai et al. 2024, arXiv:2401.06066): fine-grained experts (``granularity`` m
splits each of the E experts into m of width H / m and routes to m K of them: the same
parameters and FLOPs, many more combinations) and always-on shared experts that every
token passes through (``shared_experts`` of them, computed as one FFN of their summed
width; Qwen2-MoE's single shared expert has a sigmoid gate of its own, ``shared_gate``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.errors import ConfigError
from genlab.layers.mlp import ACTIVATIONS, MLP_KINDS, make_mlp

ROUTERS = ["softmax", "sigmoid"]


@dataclass
class MoEConfig:
    """Mixture-of-experts options of a model (``model.moe.num_experts=8 model.moe.top_k=2``).

    ``num_experts`` = 0 (the default) means no MoE: every layer keeps its dense FFN."""

    num_experts: int = 0  # routed experts before the fine-grained split; 0 = no MoE
    top_k: int = 2  # experts per token before the split
    granularity: int = 1  # DeepSeekMoE's m: E m experts of width H / m, top-(K m)
    expert_hidden: int = 0  # an expert's width before the split; 0 = the dense FFN's width
    shared_experts: int = 0  # always-on experts (DeepSeekMoE), each as wide as a routed expert
    shared_hidden: int = 0  # their summed width, if not shared_experts * routed width
    shared_gate: bool = False  # sigmoid(x w_s) scales the shared output (Qwen2-MoE)
    every: int = 1  # layer i (from 0) is MoE when (i + 1) % every == 0 ...
    first_dense: int = 0  # ... and i >= first_dense (DeepSeekMoE keeps its first layer dense)
    capacity_factor: float = 0.0  # training-time capacity per expert, f N K / E; 0 = dropless
    router: str = "softmax"  # softmax | sigmoid
    normalize: bool = True  # renormalise the K gates to sum to 1
    aux_loss_coef: float = 0.01  # Switch load-balancing loss weight
    z_loss_coef: float = 0.0  # router z-loss weight (ST-MoE uses 1e-3)
    bias_balancing: bool = False  # DeepSeek-V3 auxiliary-loss-free bias
    bias_rate: float = 1e-3  # its update speed u
    kernel: str = "auto"  # a GROUPED_LINEAR kernel, "auto", or "reference" (the plain loop)

    def __post_init__(self):
        checks = {
            "num_experts": self.num_experts >= 0,
            "top_k": self.top_k >= 1,
            "granularity": self.granularity >= 1,
            "expert_hidden": self.expert_hidden >= 0,
            "shared_experts": self.shared_experts >= 0,
            "shared_hidden": self.shared_hidden >= 0,
            "every": self.every >= 1,
            "first_dense": self.first_dense >= 0,
            "capacity_factor": self.capacity_factor >= 0,
            "bias_rate": self.bias_rate >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"moe.{name}={getattr(self, name)!r} is out of range (see layers.moe.MoEConfig)")
        if self.router not in ROUTERS:
            raise ConfigError(f"moe.router='{self.router}' is not one of {ROUTERS}")
        kernels = ["auto", "reference", *GROUPED_LINEAR]
        if self.kernel not in kernels:
            raise ConfigError(f"moe.kernel='{self.kernel}' is not one of {kernels}")
        if self.num_experts and self.top_k > self.num_experts:
            raise ConfigError(
                f"moe.top_k={self.top_k} exceeds moe.num_experts={self.num_experts}: "
                "a token cannot be routed to more experts than there are"
            )

    @property
    def enabled(self) -> bool:
        return self.num_experts > 0

    @property
    def routed_experts(self) -> int:
        """E after the fine-grained split."""
        return self.num_experts * self.granularity

    @property
    def routed_top_k(self) -> int:
        """K after the fine-grained split."""
        return self.top_k * self.granularity

    def is_moe_layer(self, i: int) -> bool:
        return self.enabled and i >= self.first_dense and (i + 1) % self.every == 0

    def expert_width(self, dense_hidden: int) -> int:
        """H of one routed expert, given the dense FFN's width."""
        return (self.expert_hidden or dense_hidden) // self.granularity

    def shared_width(self, dense_hidden: int) -> int:
        return self.shared_hidden or self.shared_experts * self.expert_width(dense_hidden)


# --- the router ----------------------------------------------------------------------


@dataclass
class Routing:
    """One forward's routing decisions."""

    idx: torch.Tensor  # (N, K) chosen experts, best first
    gates: torch.Tensor  # (N, K) their weights (float32)
    logits: torch.Tensor  # (N, E) router logits z
    probs: torch.Tensor  # (N, E) routing probabilities (softmax; sigmoid scores normalised per token)


class Router(nn.Module):
    """Scores E experts for each token and keeps the top K (module docstring)."""

    def __init__(self, dim: int, num_experts: int, top_k: int, score: str = "softmax", normalize: bool = True,
                 bias_balancing: bool = False, bias_rate: float = 1e-3):  # fmt: skip
        super().__init__()
        self.num_experts, self.top_k, self.score, self.normalize = num_experts, top_k, score, normalize
        self.bias_rate = bias_rate
        self.weight = nn.Parameter(torch.empty(num_experts, dim))  # (E, C)
        nn.init.normal_(self.weight, 0.0, 0.02)
        if bias_balancing:
            self.register_buffer("expert_bias", torch.zeros(num_experts))  # (E,), outside autograd
        else:
            self.expert_bias = None

    def forward(self, x: torch.Tensor) -> Routing:
        """x: (N, C) -> :class:`Routing`."""
        logits = F.linear(x, self.weight)  # (N, E)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # scores in fp32 at least
        scores = logits.softmax(-1) if self.score == "softmax" else logits.sigmoid()  # (N, E)
        choice = scores  # what top-K ranks; the bias picks, never weighs
        if self.expert_bias is not None:  # on sigmoid scores (DeepSeek-V3); on logits under softmax
            choice = (scores if self.score == "sigmoid" else logits) + self.expert_bias
        idx = choice.topk(self.top_k, dim=-1).indices  # (N, K)
        gates = scores.gather(1, idx)  # (N, K)
        if self.normalize:
            gates = gates / gates.sum(-1, keepdim=True).clamp_min(1e-20)
        probs = scores if self.score == "softmax" else scores / scores.sum(-1, keepdim=True).clamp_min(1e-20)
        return Routing(idx, gates, logits, probs)

    @torch.no_grad()
    def update_bias(self, counts: torch.Tensor) -> None:
        """DeepSeek-V3's sign rule: b_i += u sign(mean(c) - c_i) for slot counts c (E,)."""
        if self.expert_bias is not None:
            c = counts.float()
            self.expert_bias += self.bias_rate * torch.sign(c.mean() - c)


def switch_aux_loss(routing: Routing, num_experts: int) -> torch.Tensor:
    """E * sum_i f_i P_i (Fedus et al. 2021, eq. 4): f_i the share of the N K slots routed to
    expert i (no gradient), P_i the mean probability of i (the gradient's path). 1 when balanced."""
    counts = torch.bincount(routing.idx.reshape(-1), minlength=num_experts).float()  # (E,)
    f = counts / routing.idx.numel()
    p = routing.probs.mean(0)  # (E,)
    return num_experts * (f * p).sum()


def router_z_loss(routing: Routing) -> torch.Tensor:
    """(1/N) sum_n logsumexp(z_n)^2 (ST-MoE, Zoph et al. 2022, eq. 5): keeps router logits small."""
    return routing.logits.logsumexp(-1).square().mean()


# --- experts -------------------------------------------------------------------------


class ExpertLinear(nn.Module):
    """E linear maps stacked: ``weight`` (E, in, out), ``bias`` (E, out); expert e maps x to x W[e] + b[e]."""

    def __init__(self, num_experts: int, d_in: int, d_out: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(num_experts, d_out)) if bias else None
        nn.init.normal_(self.weight, 0.0, 0.02)


@dataclass
class Groups:
    """Rows sorted by expert: the sizes of the E groups in every form a kernel needs."""

    counts: torch.Tensor  # (E,) rows per expert
    sizes: list[int]  # the same, on the host
    expert: torch.Tensor  # (M,) expert of each row
    offset: torch.Tensor  # (M,) row's place inside its group

    @staticmethod
    def of(counts: torch.Tensor) -> Groups:
        expert = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)  # (M,)
        starts = counts.cumsum(0) - counts  # (E,)
        offset = torch.arange(expert.numel(), device=counts.device) - starts[expert]  # (M,)
        return Groups(counts, counts.tolist(), expert, offset)


def _loop_linear(x: torch.Tensor, g: Groups, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """One matmul per expert group (a loop over E experts, not over tokens)."""
    parts = x.split(g.sizes)  # E tensors (n_e, in)
    out = [p @ w[e] if b is None else torch.addmm(b[e], p, w[e]) for e, p in enumerate(parts)]
    return torch.cat(out)  # (M, out)


def _bmm_linear(x: torch.Tensor, g: Groups, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """Groups padded to the largest, one batched matmul over all experts."""
    width = max(g.sizes, default=0)
    padded = x.new_zeros(w.size(0), width, x.size(1)).index_put((g.expert, g.offset), x)  # (E, n_max, in)
    y = torch.bmm(padded, w) if b is None else torch.baddbmm(b[:, None, :], padded, w)  # (E, n_max, out)
    return y[g.expert, g.offset]  # (M, out)


def _grouped_mm_linear(x: torch.Tensor, g: Groups, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """torch's grouped GEMM over the jagged groups (fp32/bf16/fp16, 16-byte aligned rows)."""
    offs = g.counts.cumsum(0).to(torch.int32)  # (E,) end of each group
    y = F.grouped_mm(x.contiguous(), w, offs=offs)  # (M, out)
    return y if b is None else y + b[g.expert]


def _grouped_mm_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of aten._grouped_mm for torch's FlopCounterMode (training/flops.py's MFU), which has no
    formula of its own: 2 (M K N) summed over the groups. Forward and the input gradient are
    (M, K) x (E, K, N) -> (M, N); the weight gradient is (K, M) x (M, N) split along M -> (E, K, N)."""
    if len(a_shape) == 2 and len(b_shape) == 2:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]
    return 2 * math.prod(out_shape) * a_shape[-1]


if hasattr(torch.ops.aten, "_grouped_mm"):
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    if torch.ops.aten._grouped_mm not in flop_registry and torch.ops.aten._grouped_mm.default not in flop_registry:
        register_flop_formula(torch.ops.aten._grouped_mm)(_grouped_mm_flops)

#: Grouped linear kernels: fn(x (M, in) sorted by expert, groups, weight (E, in, out), bias (E, out) | None)
#: -> (M, out).
GROUPED_LINEAR: dict[str, Callable[..., torch.Tensor]] = {"loop": _loop_linear, "bmm": _bmm_linear}
if hasattr(F, "grouped_mm"):
    GROUPED_LINEAR["grouped_mm"] = _grouped_mm_linear


def _grouped_mm_fits(x: torch.Tensor, *weights: torch.Tensor) -> bool:
    if "grouped_mm" not in GROUPED_LINEAR or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    per = 16 // x.element_size()  # every row stride a multiple of 16 bytes
    return all(w.size(1) % per == 0 and w.size(2) % per == 0 for w in weights)


def auto_kernel(x: torch.Tensor, groups: Groups, *weights: torch.Tensor) -> str:
    """The kernel measured fastest (benchmarks/moe.py, AMD EPYC, forward + backward on its three
    shapes): torch's grouped_mm where it runs (at 1 thread 1.14-1.27x the padded bmm, at 2 threads
    on an idle machine 1.22-1.41x); else the padded bmm, unless padding would more than double the
    rows (an unbalanced dropless batch); else the loop."""
    if _grouped_mm_fits(x, *weights):
        return "grouped_mm"
    if max(groups.sizes, default=0) * len(groups.sizes) <= 2 * max(x.size(0), 1):
        return "bmm"
    return "loop"


class Experts(nn.Module):
    """E expert FFNs of one kind (an activation name or "swiglu"), weights stacked."""

    def __init__(self, num_experts: int, dim: int, hidden: int, kind: str = "swiglu", bias: bool = False):
        super().__init__()
        if kind not in MLP_KINDS:
            raise ConfigError(f"unknown expert kind '{kind}'; choose from {MLP_KINDS}")
        self.num_experts, self.hidden, self.kind = num_experts, hidden, kind
        self.fc = ExpertLinear(num_experts, dim, 2 * hidden if kind == "swiglu" else hidden, bias)
        self.proj = ExpertLinear(num_experts, hidden, dim, bias)

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            return F.silu(gate) * up
        return ACTIVATIONS[self.kind](h)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert e on rows x (n, C), as a plain FFN (the reference path)."""
        h = x @ self.fc.weight[e] + (self.fc.bias[e] if self.fc.bias is not None else 0)
        return self.activation(h) @ self.proj.weight[e] + (self.proj.bias[e] if self.proj.bias is not None else 0)

    def grouped(self, x: torch.Tensor, groups: Groups, kernel: str) -> torch.Tensor:
        """Rows x (M, C) sorted by expert -> (M, C), each row through its group's expert."""
        if kernel == "auto":
            kernel = auto_kernel(x, groups, self.fc.weight, self.proj.weight)
        linear = GROUPED_LINEAR[kernel]
        h = linear(x, groups, self.fc.weight, self.fc.bias)  # (M, H or 2H)
        return linear(self.activation(h), groups, self.proj.weight, self.proj.bias)  # (M, C)


# --- dispatch: the fast path and the reference ---------------------------------------


def capacity_of(n_tokens: int, top_k: int, num_experts: int, factor: float) -> int | None:
    """ceil(f N K / E) slots per expert, or None (dropless) when f = 0."""
    return math.ceil(factor * n_tokens * top_k / num_experts) if factor > 0 else None


def sorted_moe(x: torch.Tensor, r: Routing, experts: Experts, capacity: int | None, kernel: str = "auto"):
    """The fast path: sort the N K slots by expert (k-major, so first choices lead each group),
    drop each group's slots past ``capacity``, run the groups, and add them back weighted by
    their gates. Returns (y (N, C), kept slot counts (E,))."""
    N, K = r.idx.shape
    E = experts.num_experts
    slots = r.idx.t().reshape(-1)  # (K N,) slot s = k N + n, k-major: all first choices, then seconds
    order = slots.argsort(stable=True)  # (K N,) grouped by expert, priority order inside a group
    counts = torch.bincount(slots, minlength=E)  # (E,)
    if capacity is not None:
        starts = counts.cumsum(0) - counts  # (E,)
        rank = torch.arange(order.numel(), device=x.device) - starts[slots[order]]  # (K N,) place in its group
        order = order[rank < capacity]  # (M,)
        counts = counts.clamp(max=capacity)
    token = order % N  # (M,) the token each kept slot belongs to
    gate = r.gates.t().reshape(-1)[order]  # (M,)
    y = experts.grouped(x[token], Groups.of(counts), kernel)  # (M, C)
    y = (y * gate[:, None]).to(x.dtype)
    return x.new_zeros(N, x.size(1)).index_add(0, token, y), counts


def kept_slots(idx: torch.Tensor, num_experts: int, capacity: int | None) -> torch.Tensor:
    """(N, K) bool: which slots survive the capacity, by the priority rule of :func:`sorted_moe`."""
    if capacity is None:
        return torch.ones_like(idx, dtype=torch.bool)
    kept = torch.zeros_like(idx, dtype=torch.bool)
    for e in range(num_experts):
        mine = (idx == e).t().reshape(-1)  # (K N,) k-major
        place = mine.cumsum(0) - 1  # order in expert e's queue
        kept |= (mine & (place < capacity)).view(idx.size(1), idx.size(0)).t()
    return kept


def reference_moe(x: torch.Tensor, r: Routing, experts: Experts, capacity: int | None):
    """The plain path: for each expert, the tokens that chose it (and were kept) go through it
    and add their gated output. Returns (y (N, C), kept slot counts (E,))."""
    kept = kept_slots(r.idx, experts.num_experts, capacity)  # (N, K)
    y = torch.zeros_like(x)
    counts = []
    for e in range(experts.num_experts):
        n, k = torch.nonzero((r.idx == e) & kept, as_tuple=True)  # tokens that chose e, and in which place
        counts.append(n.numel())
        if n.numel():
            out = experts.expert(e, x[n]) * r.gates[n, k][:, None]  # (n_e, C)
            y = y.index_add(0, n, out.to(x.dtype))
    return y, torch.tensor(counts, device=x.device)


# --- the layer -----------------------------------------------------------------------


class MoE(nn.Module):
    """A mixture-of-experts FFN: ``MoE(x)`` has the shape of x (..., C), like a dense FFN.

    After each forward: ``aux_loss`` (the weighted balancing losses, a scalar with
    gradient), ``load`` (E,) the slots each expert was chosen for, ``kept`` (E,) those it
    ran after the capacity, and ``routing`` (the decisions)."""

    def __init__(self, dim: int, dense_hidden: int, cfg: MoEConfig, kind: str = "swiglu", bias: bool = False,
                 dropout: float = 0.0):  # fmt: skip
        super().__init__()
        if not cfg.enabled:
            raise ConfigError("MoE needs moe.num_experts >= 1")
        self.cfg = cfg
        E, K = cfg.routed_experts, cfg.routed_top_k
        self.router = Router(dim, E, K, cfg.router, cfg.normalize, cfg.bias_balancing, cfg.bias_rate)
        self.experts = Experts(E, dim, cfg.expert_width(dense_hidden), kind, bias)
        shared = cfg.shared_width(dense_hidden)
        self.shared = make_mlp(kind, dim, shared, bias) if shared else None
        self.shared_gate = nn.Linear(dim, 1, bias=False) if (shared and cfg.shared_gate) else None
        self.dropout = nn.Dropout(dropout)
        self.aux_loss: torch.Tensor | None = None
        self.load: torch.Tensor | None = None
        self.kept: torch.Tensor | None = None
        self.routing: Routing | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, C)
        cfg = self.cfg
        r = self.router(x)
        cap = capacity_of(x.size(0), r.idx.size(1), self.experts.num_experts, cfg.capacity_factor)
        cap = cap if self.training else None  # evaluation and generation are dropless
        if cfg.kernel == "reference":
            y, kept = reference_moe(x, r, self.experts, cap)
        else:
            y, kept = sorted_moe(x, r, self.experts, cap, cfg.kernel)
        if self.shared is not None:
            s = self.shared(x)  # (N, C)
            y = y + (torch.sigmoid(self.shared_gate(x)) * s if self.shared_gate is not None else s)
        load = torch.bincount(r.idx.reshape(-1), minlength=self.experts.num_experts)  # (E,)
        aux = cfg.aux_loss_coef * switch_aux_loss(r, self.experts.num_experts) if cfg.aux_loss_coef else None
        if cfg.z_loss_coef:
            z = cfg.z_loss_coef * router_z_loss(r)
            aux = z if aux is None else aux + z
        self.aux_loss = aux if aux is not None else x.new_zeros((), dtype=torch.float32)
        self.load, self.kept = load, kept
        self.routing = Routing(r.idx, r.gates.detach(), r.logits.detach(), r.probs.detach())
        if self.training:
            self.router.update_bias(load)
        return self.dropout(y).view(shape)

    def inactive_params(self) -> int:
        """Routed-expert parameters a token does not use: (E - K) / E of them."""
        E, K = self.experts.num_experts, self.router.top_k
        return sum(p.numel() for p in self.experts.parameters()) * (E - K) // E
