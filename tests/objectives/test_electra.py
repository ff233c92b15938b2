import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.objectives.electra import electra_loss, electra_step, replaced_token_detection, token_identity_bound
from genlab.objectives.masked_lm import mask_tokens, masked_lm_loss
from genlab.objectives.pretraining import PretrainLoss, pretrain_scored_loss

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
    assert set(metrics) == {"gen_loss", "disc_loss", "gen_accuracy", "disc_accuracy", "disc_recall",
                            "replaced_fraction"}  # fmt: skip


# --- the pretraining step (genlab.objectives.pretraining): what the discriminator sees and is scored on


class _FixedGenerator(nn.Module):
    """A generator whose masked-LM samples are always token ``GEN_TOKEN`` (through the interface
    ``mlm_logits`` calls: ``model(...).hidden`` and ``model.mlm``)."""

    def forward(self, ids, attention_mask, token_type_ids, heads=()):
        return SimpleNamespace(hidden=torch.zeros(*ids.shape, 1, requires_grad=True))

    def mlm(self, h):
        return one_hot_logits([[GEN_TOKEN]])[0].expand(h.shape[0], V) + h  # (N, V)


class _RecordingDiscriminator(nn.Module):
    """Records its input ids; its rtd logit is +5 on tokens 10 and 11 and -5 elsewhere."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.scale = nn.Parameter(torch.tensor(5.0))

    def forward(self, ids, attention_mask, token_type_ids, heads=()):
        self.seen.append(ids.clone())
        return SimpleNamespace(rtd_logits=self.scale * (2 * (ids >= 10).float() - 1))  # (B, T)


GEN_TOKEN = 11
CLS, SEP, PAD = 1, 2, 0


def _pretraining_batch():
    torch.manual_seed(0)
    ids = torch.randint(5, 10, (4, 12))  # text tokens 5..9: every replacement by 11 is a change
    ids[:, 0], ids[:, 7] = CLS, SEP
    ids[2:, 8:] = PAD  # two padded rows
    attention = (ids != PAD).long()
    return {"input_ids": ids, "attention_mask": attention, "token_type_ids": torch.zeros_like(ids)}


def test_pretraining_discriminator_sees_the_corrupted_text_and_is_scored_on_real_non_special_tokens():
    batch = _pretraining_batch()
    disc = _RecordingDiscriminator()
    lc = PretrainLoss(mask_rate=0.3, replace=[0.8, 0.1, 0.1])
    step = pretrain_scored_loss("electra", MASK, (PAD, CLS, SEP, MASK), V, lc)
    loss, metrics, (logits, targets) = step({"model": disc, "generator": _FixedGenerator()}, batch)
    seen = disc.seen[0]
    ids = batch["input_ids"]
    changed = seen != ids
    # The discriminator's input is the corrupted text: the generator's token wherever it changed.
    assert changed.any() and (seen[changed] == GEN_TOKEN).all()
    assert not (seen == MASK).any()  # no [MASK] reaches the discriminator
    # Scored: the real tokens that are not [CLS] / [SEP]; the targets are "changed", not "masked".
    scored = batch["attention_mask"].bool() & (ids != CLS) & (ids != SEP)
    assert logits.shape == targets.shape == (int(scored.sum()),)
    torch.testing.assert_close(targets, changed[scored].float())
    assert metrics["replaced_fraction"] == pytest.approx(changed[scored].float().mean().item())
    # The recording discriminator flags exactly tokens >= 10, i.e. the replacements.
    assert metrics["disc_accuracy"] == 1.0 and metrics["disc_recall"] == 1.0
    # Special and padding positions are in neither the loss nor the metrics.
    ref = F.binary_cross_entropy_with_logits(5 * (2 * (seen[scored] >= 10).float() - 1), changed[scored].float())
    assert metrics["disc_loss"] == pytest.approx(ref.item(), rel=1e-6)


def test_pretraining_targets_mark_changed_tokens_not_masked_positions():
    """A generator that samples the original token leaves a masked position 'original' (target 0)."""
    batch = _pretraining_batch()
    batch["input_ids"][batch["attention_mask"].bool() & (batch["input_ids"] > 4)] = GEN_TOKEN  # text of 11s
    disc = _RecordingDiscriminator()
    lc = PretrainLoss(mask_rate=0.3, replace=[1.0, 0.0, 0.0])  # every selected position [MASK]
    step = pretrain_scored_loss("electra", MASK, (PAD, CLS, SEP, MASK), V, lc)
    _, metrics, (_, targets) = step({"model": disc, "generator": _FixedGenerator()}, batch)
    assert torch.equal(disc.seen[0], batch["input_ids"])  # every [MASK] filled back with the original
    assert targets.sum() == 0 and metrics["replaced_fraction"] == 0.0 and metrics["disc_recall"] == 0.0


def _text_with_random_replacements(g: torch.Generator, n: int, vocab: int, T: int = 16, rate: float = 0.15):
    """Sequences of the lower half of the vocabulary stepping by 1-3 (ids 5 ..), 15% of the tokens
    replaced by uniform draws from the whole vocabulary: the easy case of real ELECTRA (uniformly
    random replacements in text), detectable from the token and from its neighbours."""
    half = (vocab - 5) // 2
    ids = torch.empty(n, T, dtype=torch.long)
    ids[:, 0] = torch.randint(0, half, (n,), generator=g)
    for t in range(1, T):
        ids[:, t] = (ids[:, t - 1] + torch.randint(1, 4, (n,), generator=g)) % half
    ids = ids + 5
    replaced = torch.rand(n, T, generator=g) < rate
    inputs = torch.where(replaced, torch.randint(5, vocab, (n, T), generator=g), ids)
    return inputs, (inputs != ids).float()


@pytest.mark.parametrize("prior_init", [False, True])
def test_a_zero_bias_discriminator_collapses_to_its_base_rate_and_the_prior_init_learns(prior_init):
    """One cause of the fortunes ELECTRA run staying at its base rate. With the rtd output bias at 0,
    Adam (lr 1e-3) reaches the base rate's log-odds through the body instead of the bias: every
    token's state turns to one direction (mean cosine ~1), the logit is the same everywhere and the
    loss is the base rate's entropy. Started at log(r / (1 - r)) (the recipe's default) it learns."""
    from genlab.models.bert import Bert, BertConfig
    from genlab.objectives.pretraining import init_detection

    vocab, rate = 500, 0.15
    torch.manual_seed(0)
    disc = Bert(BertConfig(vocab_size=vocab, block_size=16, n_layer=2, n_head=2, n_embd=64, pooler=False,
                           heads=["rtd"]))  # fmt: skip
    init_detection(disc, PretrainLoss(mask_rate=rate, prior_init=prior_init))
    opt = torch.optim.AdamW(disc.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(0)
    no_mlm = (torch.zeros(0, vocab), torch.zeros(0, dtype=torch.long))  # the discriminator's loss alone
    for step in range(40):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 10)  # warm-up, as the recipes have
        inputs, targets = _text_with_random_replacements(g, 16, vocab)
        loss, _ = electra_loss(*no_mlm, disc(inputs).rtd_logits, targets, disc_weight=1.0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(disc.parameters(), 1.0)
        opt.step()
    disc.eval()
    with torch.no_grad():
        inputs, targets = _text_with_random_replacements(torch.Generator().manual_seed(1), 64, vocab)
        out = disc(inputs)
    h = F.normalize(out.hidden.reshape(-1, 64)[:1000], dim=-1)  # (P, C)
    mean_cos = ((h @ h.T).sum() - len(h)) / (len(h) * (len(h) - 1))
    logits, y = out.rtd_logits.flatten(), targets.flatten()
    bce = F.binary_cross_entropy_with_logits(logits, y).item()
    p = y.mean().item()
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))  # the loss of always answering the base rate
    if prior_init:
        assert mean_cos < 0.8 and logits.std() > 0.3 and bce < 0.9 * entropy
    else:
        assert mean_cos > 0.99 and logits.std() < 0.05 and bce > 0.95 * entropy


# --- what token identity alone can score (genlab.objectives.electra.token_identity_bound)


def test_token_identity_bound_on_hand_made_numbers():
    # p = (3/4, 1/4), r = 0.2, uniform samples q = (1/2, 1/2):
    #   P = r q (1 - p) = (0.025, 0.075),  N = (1 - r) p + r p q = (0.675, 0.225)
    # token 1 ranks above token 0: AUROC = (0.025 * 0.675 / 2 + 0.075 * (0.675 + 0.225 / 2)) / (0.1 * 0.9) = 0.75;
    # P < N for both tokens, so the best answer is always "original": accuracy = base rate = 0.9, recall 0.
    bound = token_identity_bound(torch.tensor([3.0, 1.0]), rate=0.2, temperature=1e9)
    assert bound == pytest.approx({"auroc": 0.75, "accuracy": 0.9, "recall": 0.0, "base_rate": 0.9})
    with pytest.raises(ValueError, match="temperature"):
        token_identity_bound(torch.tensor([3.0, 1.0]), temperature=0.0)
    with pytest.raises(ValueError, match="unigram"):
        token_identity_bound(torch.zeros(4))


def test_token_identity_bound_matches_a_simulation_and_is_chance_at_temperature_one():
    """The bound against sampled text (tokens drawn from a Zipf unigram, 15% selected and filled
    from q ~ p^(1/T)): scoring each position by its token's P_w / N_w gives the bound's AUROC.
    At T = 1 on a large Zipf vocabulary the token says nothing: AUROC ~ 0.5."""
    from genlab.eval.anomaly import auroc

    V, n, rate, T = 50, 400_000, 0.15, 3.0
    p = 1.0 / torch.arange(1, V + 1, dtype=torch.float64)
    p = p / p.sum()
    q = p ** (1 / T) / (p ** (1 / T)).sum()
    g = torch.Generator().manual_seed(0)
    original = torch.multinomial(p, n, replacement=True, generator=g)
    selected = torch.rand(n, generator=g, dtype=torch.float64) < rate
    shown = torch.where(selected, torch.multinomial(q, n, replacement=True, generator=g), original)
    replaced = shown != original
    score = (rate * q * (1 - p) / ((1 - rate) * p + rate * p * q))[shown]
    bound = token_identity_bound(p, rate, T)
    assert auroc(score, replaced) == pytest.approx(bound["auroc"], abs=0.005)
    assert 1 - replaced.double().mean().item() == pytest.approx(bound["base_rate"], abs=0.003)
    zipf = 1.0 / torch.arange(1, 8193, dtype=torch.float64)
    assert token_identity_bound(zipf, 0.15, 1.0)["auroc"] == pytest.approx(0.5, abs=0.01)
    assert token_identity_bound(zipf, 0.15, 1e9)["auroc"] > 0.85  # uniform samples: the easy case
