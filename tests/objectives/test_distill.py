import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.objectives.distill import distillation_loss, init_student_from_teacher, student_layer_map


def softmax(xs: list[float], T: float) -> list[float]:
    e = [math.exp(x / T) for x in xs]
    return [v / sum(e) for v in e]


def test_zero_kl_and_cosine_when_the_student_is_the_teacher():
    torch.manual_seed(0)
    logits, hidden = torch.randn(2, 5, 7), torch.randn(2, 5, 4)
    attention = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    _, metrics = distillation_loss(logits, logits, None, hidden, hidden, attention)
    assert metrics["distill_kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["distill_cos"] == pytest.approx(0.0, abs=1e-6)
    assert "distill_ce" not in metrics


def test_matches_a_hand_computed_two_token_example():
    T = 2.0
    s = [[1.0, 0.0], [0.0, 0.0]]  # student logits, 2 tokens, vocabulary of 2
    t = [[0.0, 2.0], [1.0, -1.0]]  # teacher logits
    hs, ht = [[1.0, 0.0], [0.0, 3.0]], [[1.0, 1.0], [0.0, 1.0]]  # hidden states
    labels = [1, -100]  # only the first token is labelled

    kl = 0.0
    for si, ti in zip(s, t):
        ps, pt = softmax(si, T), softmax(ti, T)
        kl += sum(q * math.log(q / r) for q, r in zip(pt, ps))
    kl = T**2 * kl / 2  # mean over the 2 positions
    ce = -math.log(softmax(s[0], 1.0)[1])
    cos = 1 - (1 / math.sqrt(2) + 1.0) / 2
    by_hand = 5.0 * kl + 2.0 * ce + 1.0 * cos

    loss, metrics = distillation_loss(
        torch.tensor([s]), torch.tensor([t]), torch.tensor([labels]), torch.tensor([hs]), torch.tensor([ht])
    )
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)
    assert metrics["distill_kl"] == pytest.approx(kl, rel=1e-5)
    assert metrics["distill_ce"] == pytest.approx(ce, rel=1e-5)
    assert metrics["distill_cos"] == pytest.approx(cos, rel=1e-5)

    # Soft term on the labelled position only.
    _, only = distillation_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([labels]), restrict_to_masked=True)
    ps, pt = softmax(s[0], T), softmax(t[0], T)
    assert only["distill_kl"] == pytest.approx(T**2 * sum(q * math.log(q / r) for q, r in zip(pt, ps)), rel=1e-5)


def test_padding_is_ignored_and_gradients_reach_the_student_only():
    torch.manual_seed(0)
    student = torch.randn(2, 4, 6, requires_grad=True)
    teacher = torch.randn(2, 4, 6, requires_grad=True)
    hs = torch.randn(2, 4, 3, requires_grad=True)
    ht = torch.randn(2, 4, 3, requires_grad=True)
    labels = torch.tensor([[2, -100, 5, -100], [-100, 1, -100, -100]])
    attention = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    loss, _ = distillation_loss(student, teacher, labels, hs, ht, attention)
    loss.backward()
    assert teacher.grad is None and ht.grad is None
    assert student.grad.abs().sum() > 0 and hs.grad.abs().sum() > 0
    assert (student.grad[1, 2:] == 0).all() and (hs.grad[1, 2:] == 0).all()  # padding

    # Same loss as the unpadded pieces taken by hand.
    keep = attention.bool()
    kl = F.kl_div(
        F.log_softmax(student[keep] / 2, -1),
        F.log_softmax(teacher[keep] / 2, -1),
        reduction="batchmean",
        log_target=True,
    )
    ce = F.cross_entropy(student.reshape(-1, 6), labels.reshape(-1))
    cos = 1 - F.cosine_similarity(hs[keep], ht[keep], dim=-1).mean()
    torch.testing.assert_close(loss, 5 * 4 * kl + 2 * ce + cos)


def test_sequence_classification_logits():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 3, requires_grad=True), torch.randn(8, 3)
    labels = torch.randint(0, 3, (8,))
    loss, metrics = distillation_loss(student, teacher, labels, temperature=3.0, alpha_ce=0.5, alpha_mlm=0.5)
    p_t = F.softmax(teacher / 3, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / 3, -1))).sum(-1).mean() * 9
    torch.testing.assert_close(loss, 0.5 * kl + 0.5 * F.cross_entropy(student, labels))
    assert metrics["distill_ce"] == pytest.approx(F.cross_entropy(student, labels).item(), rel=1e-5)
    with pytest.raises(ValueError, match="differ"):
        distillation_loss(student, teacher[:, :2], labels)


def toy_teacher_state(n_layers: int) -> dict[str, torch.Tensor]:
    state = {"embed.weight": torch.zeros(2)}
    for i in range(n_layers):
        state[f"encoder.layers.{i}.attn.weight"] = torch.full((2,), float(i))
        state[f"encoder.layers.{i}.mlp.bias"] = torch.full((1,), float(i))
    state["head.weight"] = torch.ones(3)
    return state


def test_student_takes_one_layer_out_of_two():
    assert student_layer_map(12, 6) == [0, 2, 4, 6, 8, 10]
    student = init_student_from_teacher(toy_teacher_state(12), 12, 6, r"layers\.(\d+)\.")
    assert set(student) == {"embed.weight", "head.weight"} | {
        f"encoder.layers.{i}.{k}" for i in range(6) for k in ("attn.weight", "mlp.bias")
    }
    for i in range(6):  # layer 1 is teacher layer 2, and layers.1 never catches layers.10 / 11
        assert student[f"encoder.layers.{i}.attn.weight"].tolist() == [2.0 * i, 2.0 * i]
    released = init_student_from_teacher(toy_teacher_state(12), 12, 6, layer_map=[0, 2, 4, 7, 9, 11])
    assert released["encoder.layers.3.mlp.bias"].item() == 7.0
    with pytest.raises(ValueError, match="finds layers"):
        init_student_from_teacher(toy_teacher_state(12), 12, 6, r"block\.(\d+)\.")
    with pytest.raises(ValueError, match="different teacher layers"):
        init_student_from_teacher(toy_teacher_state(12), 12, 2, layer_map=[3, 3])


def test_student_state_loads_into_a_half_depth_module():
    class Net(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.embed = nn.Embedding(5, 4)
            self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(n))

    teacher, student = Net(4), Net(2)
    student.load_state_dict(init_student_from_teacher(teacher.state_dict(), 4, 2))
    torch.testing.assert_close(student.layers[1].weight, teacher.layers[2].weight)
    torch.testing.assert_close(student.embed.weight, teacher.embed.weight)
