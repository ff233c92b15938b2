"""ELECTRA: replaced token detection (Clark et al. 2020, arXiv:2003.10555).

Axes: B batch, T time (tokens), V vocabulary, N masked positions.

A small generator G is trained as a masked LM on x^masked (positions m masked as in
:func:`genlab.objectives.masked_lm.mask_tokens`). Its samples fill the masked positions to give
the discriminator's input::

    x^_i ~ p_G(x_i | x^masked)  for i in m,       x^corrupt = REPLACE(x, m, x^)

and the discriminator D predicts, at every (non-padding) position t, whether x^corrupt_t is the
original token. A sample equal to the original counts as original (target 0), as in the paper::

    target_t = 1[x^corrupt_t != x_t]

    L = L_MLM(x, theta_G) + lambda L_Disc(x, theta_D),   lambda = 50

    L_Disc = -(1/|P|) sum_{t in P} [target_t log D(x^corrupt, t) + (1 - target_t) log(1 - D(x^corrupt, t))]

over the non-padding positions P. Sampling is not differentiable, and ELECTRA does not
backpropagate the discriminator's loss into the generator through it (it is not a GAN): the
generator learns from its MLM loss only. The samples here are drawn from detached logits, so
this holds by construction (shared token embeddings, as ELECTRA uses, still receive both
gradients, through the two models' forward passes).

The discriminator loss is on every token, not only the 15% masked, which is where ELECTRA's
sample efficiency comes from.

Initialisation of the detection head's output bias at the prior log-odds of a replacement
(Lin et al. 2017, Focal Loss / RetinaNet, arXiv:1708.02002, sec. 4.1: b = log(pi / (1 - pi)))::

    b_o = log(r / (1 - r)),     r = the share of scored tokens replaced (~ the mask rate at the start)

With b_o = 0 the discriminator's first task is to lower every logit to the base rate's log-odds
(log(0.15 / 0.85) = -1.73). Adam moves one bias by about lr per step, so a network of many
weights gets there faster through its body: it turns every token's state towards the one
direction that gives that logit. Measured on the fortunes corpus (electra-mini alone, uniformly
random replacements, lr 1e-3): the states of different tokens reach a mean cosine of 1.000
within 50 steps, the logit's spread 0.001, and after 300 steps the discriminator is still at its
base rate (recall 0, AUROC 0.75 from what is left of the spread); started at the prior, the same
run keeps the states apart (cosine 0.16) and reaches AUROC 0.89, recall 0.27, accuracy 0.867 over
a base rate of 0.849 (:func:`detection_prior`). This is necessary, not sufficient: with the
learned generator in the loop (fortunes-electra) the discriminator's states still collapse
(through near-uniform attention whose output dominates the residual stream) while the
generator is in its unigram stage.

What token identity alone can score. A generator at its unigram stage samples x^ ~ q, q_w
proportional to p_w^(1/T) (p the unigram distribution of the text, T the sampling temperature),
whatever the context. With mask rate r, a position shows token w and is replaced or original with
the masses::

    P_w = r q_w (1 - p_w)               selected, w sampled over another original
    N_w = (1 - r) p_w + r p_w q_w       not selected, or w sampled back over itself

so a discriminator that looks at the token only, and not at its neighbours, ranks by P_w / N_w at
best (:func:`token_identity_bound`). At T = 1, P_w / N_w ~ r / (1 - r) for every w: AUROC 0.5,
accuracy the base rate; only context can tell a replacement. On the fortunes vocabulary (8,192
WordPiece tokens) the bound is AUROC 0.89, accuracy 0.868 over a base rate of 0.85 and recall 0.33
for uniform samples (T -> infinity): what the discriminator of the prior-init run reached (0.89,
0.867, 0.27), so that run had learnt token identity and no context. A validation AUROC above the
bound of its temperature is context learnt.

Measured on fortunes (electra-mini, batch 32; issue 12): the discriminator learns token identity
within 100 steps and, within a few hundred steps, no context. Alone against fixed unigram samples
(T = 1; a bigram count model scores AUROC 0.82 there) it stays at AUROC 0.50 and its token states
collapse (mean cosine 0.94 at step 50 and 0.997 at step 100 with lr 1e-3; 0.64 at step 50 with
lr 5e-4). With the learned generator at T = 1 and the official masking and optimisation it holds
on while the generator is still flatter than unigram (AUROC 0.57 at step 100) and collapses as the
generator gets there (0.51, cosine 0.79, logit spread 0.005 at step 200). At T = 3 (``loss.temperature``
in fortunes-electra) it keeps learning and its states stay apart: AUROC 0.817, 0.823, 0.832 and
0.837 at steps 100-400 against the identity bound of 0.834, and at step 400 accuracy 0.8575 over a
base rate of 0.850, past the best context-blind accuracy (0.854): token identity, and a first trace
of context.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from genlab.objectives.masked_lm import IGNORE_INDEX, masked_lm_loss


def detection_prior(replaced_rate: float) -> float:
    """The logit log(r / (1 - r)) whose sigmoid is the replaced share r: the initial output bias of
    the detection head (module docstring)."""
    if not 0.0 < replaced_rate < 1.0:
        raise ValueError(f"replaced_rate={replaced_rate} must be between 0 and 1 (exclusive)")
    return math.log(replaced_rate / (1.0 - replaced_rate))


def token_identity_bound(unigram: torch.Tensor, rate: float = 0.15, temperature: float = 1.0) -> dict[str, float]:
    """The best a context-blind discriminator scores against a unigram-stage generator (module
    docstring): unigram (V,) token counts or probabilities of the text (0 for tokens never
    replaced: special ones), mask ``rate`` r, sampling ``temperature`` T -> ``auroc`` (replaced vs
    original, ties one half), ``accuracy`` (answer "replaced" where P_w > N_w), ``recall`` and
    ``base_rate`` (the share of original tokens)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate={rate} must be between 0 and 1 (exclusive)")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    p = unigram.double().clamp(min=0)
    if p.dim() != 1 or not bool(p.sum() > 0):
        raise ValueError(f"unigram must be a (V,) vector of counts with a positive sum, got {tuple(p.shape)}")
    p = p / p.sum()
    seen = p > 0
    q = torch.zeros_like(p)
    logq = p[seen].log() / temperature
    q[seen] = (logq - logq.max()).exp()
    q = q / q.sum()  # (V,) the generator's samples
    pos = rate * q * (1 - p)  # (V,) mass of "w shown, replaced"
    neg = (1 - rate) * p + rate * p * q  # (V,) mass of "w shown, original"
    keep = seen & ((pos > 0) | (neg > 0))
    pos, neg = pos[keep], neg[keep]
    ratio = pos / neg
    levels, group = torch.unique(ratio, return_inverse=True)  # ascending: ties share one level
    P = torch.zeros_like(levels).scatter_add_(0, group, pos)
    N = torch.zeros_like(levels).scatter_add_(0, group, neg)
    below = N.cumsum(0) - N  # original mass ranked below each level
    auroc = float((P * (below + 0.5 * N)).sum() / (P.sum() * N.sum()))
    flag = pos > neg
    return {
        "auroc": auroc,
        "accuracy": float((torch.where(flag, pos, neg)).sum() / (pos.sum() + neg.sum())),
        "recall": float(pos[flag].sum() / pos.sum()),
        "base_rate": float(neg.sum() / (pos.sum() + neg.sum())),
    }


@torch.no_grad()
def replaced_token_detection(
    gen_logits: torch.Tensor,
    masked_inputs: torch.Tensor,
    labels: torch.Tensor,
    original_ids: torch.Tensor,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator logits (B, T, V) -> (discriminator inputs (B, T) long, targets (B, T) float 0/1).

    Every labelled position (``labels != -100``) gets a token sampled from softmax(gen_logits / temperature)
    there, whatever the masking put in it ([MASK], a random token or the original); the other
    positions keep ``masked_inputs``. targets = 1 where the result differs from ``original_ids``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (1.0 samples from the generator as is)")
    selected = labels != IGNORE_INDEX  # (B, T)
    disc_inputs = masked_inputs.clone()
    if selected.any():
        probs = (gen_logits[selected].float() / temperature).softmax(-1)  # (N, V)
        sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (N,)
        disc_inputs[selected] = sampled.to(disc_inputs.dtype)
    targets = (disc_inputs != original_ids).float()
    return disc_inputs, targets


def electra_loss(
    gen_logits: torch.Tensor,
    labels: torch.Tensor,
    disc_logits: torch.Tensor,
    targets: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    disc_weight: float = 50.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """MLM loss of the generator + disc_weight * BCE of the discriminator over the scored positions.

    gen_logits (B, T, V), labels (B, T) with -100; disc_logits (B, T) or (B, T, 1), targets (B, T);
    attention_mask (B, T), 1 where the discriminator is scored (None: all): the real tokens, or
    the real tokens that are not special ones. metrics: ``gen_loss``, ``disc_loss``,
    ``gen_accuracy`` (masked positions), ``disc_accuracy`` (logit > 0 vs target, scored positions),
    ``disc_recall`` (share of the replaced tokens with logit > 0; 0 when none is replaced) and
    ``replaced_fraction`` (share of scored tokens the discriminator sees replaced). Accuracy alone
    hides a discriminator that always answers "original": it then scores 1 - replaced_fraction
    with a recall of 0.
    """
    gen_loss, gen_metrics = masked_lm_loss(gen_logits, labels)
    if disc_logits.dim() == targets.dim() + 1:
        disc_logits = disc_logits.squeeze(-1)
    keep = torch.ones_like(targets, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    logits, target = disc_logits[keep].float(), targets[keep].float()  # (P,)
    disc_loss = F.binary_cross_entropy_with_logits(logits, target)
    loss = gen_loss + disc_weight * disc_loss
    metrics = {
        "gen_loss": gen_loss.item(),
        "disc_loss": disc_loss.item(),
        "gen_accuracy": gen_metrics["mlm_accuracy"],
        "disc_accuracy": ((logits > 0).float() == target).float().mean().item(),
        "disc_recall": ((logits > 0) & (target > 0)).sum().item() / max(int((target > 0).sum()), 1),
        "replaced_fraction": target.mean().item(),
    }
    return loss, metrics


def electra_step(
    gen: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    disc: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    original_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    disc_weight: float = 50.0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One ELECTRA loss: gen(inputs, attention_mask) -> logits (B, T, V), sample, disc(x^corrupt, attention_mask)
    -> logits (B, T). ``inputs, labels`` come from ``mask_tokens(original_ids, ...)``; wrap models in
    lambdas to fit the call. Returns :func:`electra_loss`."""
    gen_logits = gen(inputs, attention_mask)
    disc_inputs, targets = replaced_token_detection(gen_logits, inputs, labels, original_ids, generator, temperature)
    disc_logits = disc(disc_inputs, attention_mask)
    return electra_loss(gen_logits, labels, disc_logits, targets, attention_mask, disc_weight)
