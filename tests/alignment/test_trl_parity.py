"""genlab's DPO, GRPO and reward losses equal TRL's on the same weights and the same batch (1e-5).

TRL's own entry points compute the loss: ``DPOTrainer.compute_loss`` and ``RewardTrainer.compute_loss``
on a batch from the trainer's own data loader, and ``GRPOTrainer._compute_loss`` on a hand-made
batch of rollouts (prompt/completion ids and masks, advantages, old and reference log-probs), so the
comparison needs no sampling. The models are tiny random GPT-2s, the same weights in both libraries.
"""

import copy

import pytest
import torch
from tiny_models import EOS, PAD, hf_config, hf_lm, hf_tokenizer, tiny_gpt

from genlab.alignment.dpo import dpo_step, reference_logprobs
from genlab.alignment.grpo import grpo_step
from genlab.alignment.logprobs import token_logprobs
from genlab.alignment.reward import reward_step
from genlab.models.heads import ScoreModel

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

PAIRS = [
    {"prompt": "Symbol of iron?", "chosen": " Fe", "rejected": " I don't know"},
    {"prompt": "2+2=", "chosen": " 4", "rejected": " 5, or so"},
    {"prompt": "Capital of France:", "chosen": " Paris", "rejected": " Lyon"},
    {"prompt": "Hi", "chosen": " Hello there!", "rejected": " Go away"},
]


def _args(cls, tmp_path, **kw):
    # TRL's configs default to bf16 mixed precision (CPU autocast too): fp32 here, as genlab runs.
    return cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=4, max_steps=1,
               dataloader_num_workers=0, bf16=False, **kw)  # fmt: skip


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_equals_trl(tmp_path, beta):
    """DPOTrainer's loss (its policy and reference forwards) equals genlab's on the same batch, and so do the
    implicit rewards it logs; genlab's reference log-probs equal a plain transformers forward too."""
    policy, reference = tiny_gpt(0), tiny_gpt(1)
    with torch.no_grad():  # a policy that differs from its reference
        for p, q in zip(policy.parameters(), reference.parameters()):
            p.add_(0.3 * (q - p))
    args = _args(trl.DPOConfig, tmp_path, beta=beta, loss_type=["sigmoid"], precompute_ref_log_probs=False)
    data = datasets.Dataset.from_list(PAIRS)
    trainer = trl.DPOTrainer(model=hf_lm(policy), ref_model=hf_lm(reference), args=args, train_dataset=data,
                             processing_class=hf_tokenizer())  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    theirs = trainer.compute_loss(trainer.model, batch)
    ids, amask, cmask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    ours, metrics = dpo_step(policy, reference, (ids, amask, cmask), beta=beta)
    assert abs(ours.item() - theirs.item()) < 1e-5
    logged = trainer._metrics["eval"]
    assert metrics["reward_margin"].item() == pytest.approx(logged["rewards/margins"][-1], abs=1e-5)
    assert metrics["reward_chosen"].item() == pytest.approx(logged["rewards/chosen"][-1], abs=1e-5)
    assert metrics["reward_accuracy"].item() == pytest.approx(logged["rewards/accuracies"][-1])
    # genlab's reference log-probs against the same weights in a fresh transformers model
    plain = hf_lm(reference)
    with torch.no_grad():
        logp = torch.log_softmax(plain(ids, attention_mask=amask).logits[:, :-1], -1)
        expected = (logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * cmask[:, 1:]).sum(-1)
    torch.testing.assert_close(torch.cat(reference_logprobs(reference, (ids, amask, cmask))), expected,
                               atol=1e-5, rtol=1e-6)  # fmt: skip


def _grpo_batch(policy, reference, generator):
    """4 completions of 2 prompts (same-length prompts, right-padded completions ending in <eos>)."""
    N, P, C = 4, 6, 5
    prompt = torch.randint(0, 95, (N // 2, P), generator=generator).repeat_interleave(2, 0)
    completion = torch.randint(0, 95, (N, C), generator=generator)
    lengths = torch.tensor([5, 3, 4, 2])
    cmask = (torch.arange(C)[None] < lengths[:, None]).long()
    completion[torch.arange(N), lengths - 1] = EOS
    completion = completion.masked_fill(cmask == 0, PAD)
    ids = torch.cat([prompt, completion], 1)
    amask = torch.cat([torch.ones_like(prompt), cmask], 1)
    with torch.no_grad():
        ref = token_logprobs(reference, ids, amask)
        old = token_logprobs(policy, ids, amask) + 0.3 * torch.randn(N, P + C - 1, generator=generator)
    return prompt, completion, cmask, ids, amask, old, ref


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
@pytest.mark.parametrize("correction", [True, False])
def test_grpo_loss_equals_trl(tmp_path, loss_type, correction):
    policy, reference = tiny_gpt(0), tiny_gpt(1)
    g = torch.Generator().manual_seed(0)
    prompt, completion, cmask, ids, amask, old, ref = _grpo_batch(policy, reference, g)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    # beta=0 at construction (else TRL loads a reference model by hub name); the loss reads self.beta
    # and the reference log-probs of the batch, so beta is set after.
    args = _args(trl.GRPOConfig, tmp_path, beta=0.0, epsilon=0.2, loss_type=loss_type, num_generations=2,
                 max_completion_length=completion.size(1), use_bias_correction_kl=correction)  # fmt: skip
    hf = hf_lm(policy)
    trainer = trl.GRPOTrainer(model=hf, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
                              train_dataset=datasets.Dataset.from_list([{"prompt": "a"}] * 4),
                              processing_class=hf_tokenizer())  # fmt: skip
    trainer.beta = 0.04
    trainer.model.eval()  # evaluation mode: no gradient-accumulation normaliser
    P = prompt.size(1)
    inputs = {
        "prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt),
        "completion_ids": completion, "completion_mask": cmask,
        "advantages": advantages,
        "old_per_token_logps": old[:, P - 1 :], "ref_per_token_logps": ref[:, P - 1 :],
        "num_items_in_batch": cmask.sum(),
    }  # fmt: skip
    theirs = trainer._compute_loss(trainer.model, inputs)
    ours, _ = grpo_step(policy, (ids, amask, torch.cat([torch.zeros_like(prompt), cmask], 1), old, ref, advantages),
                        beta=0.04, clip=0.2, loss_type=loss_type, kl_ratio_correction=correction)  # fmt: skip
    assert abs(ours.item() - theirs.item()) < 1e-5


def test_reward_loss_equals_trl(tmp_path):
    from transformers import GPT2ForSequenceClassification

    from genlab.models.convert.gpt2 import genlab_state_to_hf

    scorer = ScoreModel(tiny_gpt(0)).eval()
    hf = GPT2ForSequenceClassification(hf_config(scorer.backbone, num_labels=1))
    hf.load_state_dict(genlab_state_to_hf(scorer.backbone.state_dict(), scorer.backbone.config), strict=False)
    hf.score.weight.data.copy_(scorer.head.weight)
    hf.eval()
    rows = [{"chosen": p["prompt"] + p["chosen"], "rejected": p["prompt"] + p["rejected"]} for p in PAIRS]
    data = datasets.Dataset.from_list(rows)
    trainer = trl.RewardTrainer(model=hf, args=_args(trl.RewardConfig, tmp_path), train_dataset=data,
                                processing_class=hf_tokenizer())  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    theirs = trainer.compute_loss(trainer.model, dict(batch))
    ours, metrics = reward_step(scorer, (batch["input_ids"], batch["attention_mask"]))
    assert abs(ours.item() - theirs.item()) < 1e-5
    assert metrics["accuracy"].item() == pytest.approx(trainer._metrics["eval"]["accuracy"][-1])


def test_trl_models_are_copies_not_shared():
    """The HF copies hold the same numbers as genlab's model: the parity above compares like with like."""
    policy = tiny_gpt(0)
    hf = hf_lm(copy.deepcopy(policy))
    ids = torch.randint(0, 95, (2, 9))
    torch.testing.assert_close(policy(ids), hf(ids).logits, atol=1e-5, rtol=1e-4)
