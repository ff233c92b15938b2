"""The alignment losses on tiny models and hand-made numbers."""

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_gpt

from genlab.alignment.data import collate_pairs, encode_pairs
from genlab.alignment.dpo import dpo_loss, dpo_step
from genlab.alignment.grpo import group_advantages, grpo_loss, grpo_step, k3_kl
from genlab.alignment.logprobs import sequence_logprobs, token_logprobs
from genlab.alignment.ppo import kl_penalised_rewards, ppo_policy_step, ppo_targets
from genlab.alignment.reward import bradley_terry_loss
from genlab.alignment.rollouts import rollout, verifiable_reward
from genlab.alignment.sft import collate, pack, sft_loss, sft_targets
from genlab.generation.decode import GenerationConfig
from genlab.tokenizers.char import CharTokenizer
from genlab.tokenizers.chat import PLAIN_TEMPLATE, ROLE_TOKEN_TEMPLATE, render_ids, train_chat_bpe


def test_sft_mask_covers_exactly_the_assistant_tokens_on_the_role_token_template():
    tok = train_chat_bpe("What is Python? A language. Be brief. Thanks! You are welcome." * 20, vocab_size=300)
    convo = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Python?"},
             {"role": "assistant", "content": "A language."}, {"role": "user", "content": "Thanks!"},
             {"role": "assistant", "content": "You are welcome."}]  # fmt: skip
    ids, mask = render_ids(ROLE_TOKEN_TEMPLATE, tok, convo)
    assert tok.decode(ids) == ROLE_TOKEN_TEMPLATE.render(convo, add_generation_prompt=False)
    # the learned tokens: each reply's content and its end-of-turn markup, nothing else
    runs, run = [], []
    for i, m in zip(ids, mask):
        if m:
            run.append(i)
        elif run:
            runs, run = [*runs, run], []
    runs += [run] if run else []
    assert [tok.decode(r) for r in runs] == ["A language.<|end|>\n", "You are welcome.<|end|>\n"]
    end = tok.encode("<|end|>")
    assert len(end) == 1 and sum(mask) == sum(len(r) for r in runs) and all(r[-2] == end[0] for r in runs)
    x, y = collate([(ids, mask)], block_size=128)
    inputs, targets = sft_targets(x, y)
    assert tok.decode(targets[targets != -100].tolist()) == "A language.<|end|>\nYou are welcome.<|end|>\n"
    assert inputs.shape == targets.shape == (1, len(ids) - 1)


def test_sft_mask_on_the_plain_template_of_a_char_run():
    tok = CharTokenizer.train("User: hi\nAssistant: yo\n")
    ids, mask = render_ids(
        PLAIN_TEMPLATE, tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    )
    assert tok.decode(ids) == "User: hi\nAssistant: yo\n"
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "yo\n"


def test_sft_loss_equals_cross_entropy_on_assistant_tokens_only():
    model = tiny_gpt(0)
    ids = torch.randint(0, 95, (2, 10))
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0, 6:] = 1
    mask[1, 3:5] = 1
    logits = model(ids[:, :-1])
    keep = mask[:, 1:].bool()
    expected = F.cross_entropy(logits[keep], ids[:, 1:][keep])
    torch.testing.assert_close(sft_loss(model, (ids, mask)), expected)


def test_pack_fills_rows():
    rows = pack([([1, 2, 3], [0, 1, 1]), ([4, 5, 6, 7], [0, 0, 1, 1])], block_size=2)
    assert rows == [([1, 2, 3], [0, 1, 1]), ([4, 5, 6], [0, 0, 1])]


def test_sequence_logprobs_sum_the_completion_tokens():
    model = tiny_gpt(0)
    ids = torch.randint(0, 95, (1, 6))
    cmask = torch.tensor([[0, 0, 0, 1, 1, 0]])
    per = token_logprobs(model, ids)
    assert sequence_logprobs(model, ids, cmask).item() == pytest.approx((per[0, 2] + per[0, 3]).item())


def test_bradley_terry_by_hand():
    loss, m = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx((-math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(1)))) / 2)
    assert m["accuracy"].item() == 0.5


def test_dpo_loss_is_log2_when_policy_is_reference_and_label_smoothing():
    model = tiny_gpt(0)
    tok = CharTokenizer.train("".join(chr(i) for i in range(32, 126)) + "\n")  # 95 ids, as tiny_gpt
    batch = collate_pairs(encode_pairs(PLAIN_TEMPLATE, tok, [{"prompt": "ab", "chosen": "cd", "rejected": "efg"}]), 64)
    loss, m = dpo_step(model, model, batch, beta=0.5)
    assert loss.item() == pytest.approx(math.log(2)) and m["reward_margin"].item() == 0.0
    h = torch.tensor([1.0])
    smooth, _ = dpo_loss(h, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=1.0, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(-0.9 * F.logsigmoid(h).item() - 0.1 * F.logsigmoid(-h).item())


def test_kl_terms_are_zero_when_policy_equals_reference():
    logp = torch.randn(3, 5)
    assert torch.equal(k3_kl(logp, logp), torch.zeros(3, 5))
    mask = torch.ones(3, 5)
    _, metrics = grpo_loss(logp, logp, logp, torch.randn(3), mask, beta=0.1)
    assert metrics["kl"].item() == 0.0
    rewards, kl = kl_penalised_rewards(torch.tensor([1.0, 2.0, 3.0]), logp, logp, mask, beta=0.1)
    assert torch.equal(kl, torch.zeros(3, 5))
    assert rewards.sum(1).tolist() == [1.0, 2.0, 3.0] and rewards[:, -1].tolist() == [1.0, 2.0, 3.0]
    assert (k3_kl(logp, logp + 0.3) > 0).all()  # and positive otherwise


def test_group_advantages_by_hand():
    adv = group_advantages(torch.tensor([1.0, 0.0, 5.0, 5.0]), group_size=2)
    s = torch.tensor([1.0, 0.0]).std().item()
    assert adv.tolist() == pytest.approx([0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.0, 0.0])


def test_grpo_on_policy_loss_is_minus_mean_advantage_plus_kl():
    logp = torch.randn(2, 4)
    ref = logp + 0.2
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    loss, _ = grpo_loss(logp, logp, ref, torch.tensor([1.0, -2.0]), mask, beta=0.5)
    kl = k3_kl(logp, ref)
    expected = ((-1.0 + 0.5 * kl[0, :2]).mean() + (2.0 + 0.5 * kl[1]).mean()) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ppo_step_on_a_real_rollout_from_the_generation_engine():
    policy = tiny_gpt(0)
    tok = CharTokenizer.train("".join(chr(i) for i in range(32, 127)))
    cfg = GenerationConfig(max_new_tokens=5, temperature=1.0, num_return_sequences=2, seed=3)
    out = rollout(policy, [tok.encode("ab"), tok.encode("xyz")], cfg, tok.decode)
    assert out.ids.shape == out.attention_mask.shape == out.completion_mask.shape == (4, 3 + 5)
    assert out.completion_mask.sum().item() == 20 and out.attention_mask[0, 0].item() == 0  # "ab" left-padded
    old = token_logprobs(policy, out.ids, out.attention_mask)
    mask = out.completion_mask[:, 1:]
    adv, returns, kl = ppo_targets(torch.tensor([1.0, -1.0, 0.0, 1.0]), old, old, torch.zeros_like(old), mask)
    assert kl.abs().max().item() == 0.0 and (adv * (1 - mask)).abs().max().item() == 0.0
    loss, metrics = ppo_policy_step(policy, (out.ids, out.attention_mask, out.completion_mask, old, adv))
    assert loss.item() == pytest.approx(-(adv * mask).sum().item() / mask.sum().item(), abs=1e-5)
    assert metrics["clip_frac"].item() == 0.0


def test_grpo_step_backpropagates():
    policy = tiny_gpt(0).train()
    ids = torch.randint(0, 95, (2, 6))
    am = torch.ones_like(ids)
    cm = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    with torch.no_grad():
        old = token_logprobs(policy, ids, am)
    loss, _ = grpo_step(policy, (ids, am, cm, old, old, torch.tensor([1.0, -1.0])))
    loss.backward()
    assert policy.tok_emb.weight.grad.abs().sum() > 0


def test_verifiable_reward_orders_right_abstain_wrong():
    assert verifiable_reward(" Fe.\nmore", "Fe") == 1.0
    assert verifiable_reward(" I don't know", "Fe") == 0.0
    assert verifiable_reward(" Cu", "Fe") == -1.0
