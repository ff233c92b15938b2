import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.objectives.electra import electra_loss, electra_step, replaced_token_detection
from genlab.objectives.masked_lm import mask_tokens, masked_lm_loss

MASK, V = 3, 12


def one_hot_logits(tokens: list[list[int]], scale: float = 1e4) -> torch.Tensor:
    """(B, T, V) logits that put all the probability on the given token at each position."""
    return F.one_hot(torch.tensor(tokens), V).float() * scale


def test_targets_mark_exactly_the_changed_tokens():
    original = torch.tensor([[5, 6, 7, 8, 9]])
    masked = torch.tensor([[5, MASK, MASK, 11, 9]])  # position 3 got a random token from the masking
    labels = torch.tensor([[-100, 6, 7, 8, -100]])
    # The generator samples: 6 (the original), 4 (a change), 8 (the original, over the random 11).
    gen = one_hot_logits([[0, 6, 4, 8, 0]])
    disc_inputs, targets = replaced_token_detection(gen, masked, labels, original, generator=torch.Generator())
    assert disc_inputs.tolist() == [[5, 6, 4, 8, 9]]
    assert targets.tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0]]
    assert targets.dtype == torch.float32


def test_samples_follow_the_generator_softmax_with_temperature_and_are_seeded():
    N = 4000
    logits = torch.tensor([0.0, math.log(3.0)] + [-1e4] * (V - 2)).expand(1, N, V)  # p = (1/4, 3/4)
    ids = torch.zeros(1, N, dtype=torch.long)
    labels = torch.ones(1, N, dtype=torch.long)
    for temperature, p1 in [(1.0, 0.75), (2.0, math.sqrt(3) / (1 + math.sqrt(3)))]:
        a, _ = replaced_token_detection(logits, ids, labels, ids, torch.Generator().manual_seed(0), temperature)
        b, targets = replaced_token_detection(logits, ids, labels, ids, torch.Generator().manual_seed(0), temperature)
        assert torch.equal(a, b)
        # SE of a share over 4000 draws <= 0.0079; 5 SE.
        assert abs((a == 1).float().mean().item() - p1) < 5 * math.sqrt(p1 * (1 - p1) / N)
        assert torch.equal(targets, (a != 0).float())
    with pytest.raises(ValueError, match="temperature"):
        replaced_token_detection(logits, ids, labels, ids, temperature=0.0)


def test_electra_loss_is_mlm_plus_weighted_bce_over_real_tokens():
    gen_logits = torch.randn(2, 4, V)
    labels = torch.tensor([[-100, 4, -100, -100], [5, -100, -100, -100]])
    disc_logits = torch.tensor([[2.0, -1.0, 0.5, 99.0], [-3.0, 1.0, -99.0, 99.0]])
    targets = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    attention = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # the +-99 logits sit on padding
    loss, metrics = electra_loss(gen_logits, labels, disc_logits, targets, attention, disc_weight=50.0)
    real = attention.bool()
    bce = F.binary_cross_entropy_with_logits(disc_logits[real], targets[real])
    gen_loss, _ = masked_lm_loss(gen_logits, labels)
    torch.testing.assert_close(loss, gen_loss + 50.0 * bce)
    assert metrics["disc_loss"] == pytest.approx(bce.item(), rel=1e-6)
    # Real positions, (logit > 0) vs target: 2 vs 0 wrong, -1 vs 1 wrong, 0.5 vs 1 right, -3 vs 0 right,
    # 1 vs 1 right; 3 of the 5 targets are 1.
    assert metrics["disc_accuracy"] == pytest.approx(3 / 5)
    assert metrics["replaced_fraction"] == pytest.approx(3 / 5)
    # (B, T, 1) discriminator logits are accepted too.
    again, _ = electra_loss(gen_logits, labels, disc_logits[..., None], targets, attention)
    torch.testing.assert_close(again, loss)


def test_discriminator_loss_reaches_the_generator_only_through_its_mlm_loss():
    torch.manual_seed(0)
    gen = nn.Embedding(V, V)  # toy generator: logits (B, T, V) from each token alone
    disc = nn.Embedding(V, 1)  # toy discriminator: a logit per token
    ids = torch.randint(4, V, (8, 10))
    ids[:, 0] = 1
    inputs, labels = mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=(0, 1, 2), rate=0.3)

    loss, metrics = electra_step(
        lambda x, m: gen(x), lambda x, m: disc(x), inputs, labels, ids, generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert disc.weight.grad.abs().sum() > 0
    total_grad = gen.weight.grad.clone()

    gen.zero_grad()
    masked_lm_loss(gen(inputs), labels)[0].backward()
    torch.testing.assert_close(total_grad, gen.weight.grad)  # the 50 * BCE added nothing
    assert total_grad.abs().sum() > 0
    assert set(metrics) == {"gen_loss", "disc_loss", "gen_accuracy", "disc_accuracy", "replaced_fraction"}
