"""The causal LM loss on a model that returns logits or a ModelOutput, with and without an aux loss."""

import copy

import torch
import torch.nn as nn

from genlab.models.outputs import ModelOutput
from genlab.objectives.causal_lm import causal_lm_loss, mean_loss
from genlab.training.engine import TrainConfig, fit
from genlab.training.runtime import Runtime

V, C = 11, 8


class TinyLM(nn.Module):
    """Embedding + linear head; returns logits, or a ModelOutput with an optional aux loss on the head."""

    def __init__(self, output: str = "tensor", aux_weight: float = 0.0):
        super().__init__()
        self.output, self.aux_weight = output, aux_weight
        self.emb, self.head = nn.Embedding(V, C), nn.Linear(C, V)

    def forward(self, ids):
        h = self.emb(ids)  # (B, T, C)
        logits = self.head(h)  # (B, T, V)
        if self.output == "tensor":
            return logits
        aux = self.aux_weight * self.head.weight.square().sum() if self.aux_weight else None
        return ModelOutput(logits, (h,), aux)


def _batch(seed=0, B=3, T=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (B, T + 1), generator=g)
    y = x[:, 1:].clone()
    y[0, :3] = -100  # ignored targets
    return x[:, :-1], y


def _by_hand(model, batch):
    """-(1/N) sum log softmax(logits)[target] over the targets that are not -100."""
    x, y = batch
    logp = torch.log_softmax(model.head(model.emb(x)).float(), -1)  # (B, T, V)
    keep = y != -100
    return -logp[keep].gather(-1, y[keep][:, None]).sum() / keep.sum()


def test_tensor_and_model_output_give_the_same_loss_as_by_hand():
    torch.manual_seed(0)
    plain = TinyLM("tensor")
    wrapped = copy.deepcopy(plain)
    wrapped.output = "model_output"
    batch = _batch()
    a, b = causal_lm_loss(plain, batch), causal_lm_loss(wrapped, batch)
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)  # no aux: the loss alone, as before
    torch.testing.assert_close(a, _by_hand(plain, batch), rtol=1e-6, atol=1e-6)
    assert torch.equal(a, b)


def test_an_aux_loss_is_returned_as_the_metric_the_engine_adds():
    torch.manual_seed(0)
    model = TinyLM("model_output", aux_weight=0.01)
    batch = _batch()
    loss, metrics = causal_lm_loss(model, batch)
    assert set(metrics) == {"aux_loss"}
    torch.testing.assert_close(loss, _by_hand(model, batch), rtol=1e-6, atol=1e-6)  # the cross-entropy alone
    torch.testing.assert_close(metrics["aux_loss"], 0.01 * model.head.weight.square().sum())
    assert metrics["aux_loss"].requires_grad


def test_mean_loss_is_the_cross_entropy_without_the_aux_loss():
    torch.manual_seed(0)
    plain = TinyLM("tensor")
    with_aux = copy.deepcopy(plain)
    with_aux.output, with_aux.aux_weight = "model_output", 1.0
    batches = [_batch(0), _batch(1, B=2, T=5)]
    assert mean_loss(with_aux, batches) == mean_loss(plain, batches)
    x, y = zip(*batches)
    n = [int((t != -100).sum()) for t in y]
    expected = sum(_by_hand(plain, b).item() * k for b, k in zip(batches, n)) / sum(n)
    assert abs(mean_loss(plain, batches) - expected) < 1e-6


def test_the_engine_trains_on_cross_entropy_plus_aux_loss():
    """One engine step on a ModelOutput with an aux loss: the gradient of CE + aux, taken by hand."""
    torch.manual_seed(0)
    model = TinyLM("model_output", aux_weight=0.05)
    reference = copy.deepcopy(model)
    batch = _batch()
    cfg = TrainConfig(
        max_steps=1,
        warmup_steps=0,
        schedule="constant",
        grad_clip=0.0,
        eval_interval=0,
        log_interval=1,
        progress=False,
        tensorboard=False,
    )
    trainer = fit(
        model,
        causal_lm_loss,
        iter([batch]),
        torch.optim.SGD(model.parameters(), lr=0.1),
        Runtime(torch.device("cpu"), torch.float32),
        cfg,
    )
    loss, metrics = causal_lm_loss(reference, batch)
    (loss + metrics["aux_loss"]).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    row = trainer.history[-1]
    assert abs(row["train_loss"] - loss.item()) < 1e-6 and abs(row["aux_loss"] - metrics["aux_loss"].item()) < 1e-6
