import pytest
import torch

from genlab.layers.attention import MultiHeadAttention
from genlab.layers.efficient.linformer import LinformerAttention, SequenceProjection


def _pair(T=12, C=16, H=2):
    torch.manual_seed(0)
    lin = LinformerAttention(C, H, seq_len=T, k=T).double().eval()
    full = MultiHeadAttention(C, H, causal=False, backend="eager").double().eval()
    full.load_state_dict({k: v for k, v in lin.state_dict().items() if not k.startswith("seq.")})
    return lin, full


def test_identity_projections_with_k_equal_t_is_full_attention():
    lin, full = _pair()
    with torch.no_grad():
        lin.seq.e.copy_(torch.eye(12))
        lin.seq.f.copy_(torch.eye(12))
    x = torch.randn(3, 12, 16, dtype=torch.float64)
    torch.testing.assert_close(lin(x), full(x), atol=1e-6, rtol=1e-6)


def test_a_shorter_sequence_is_the_zero_padded_one():
    """T < n uses E's first T columns: the same as padding the keys and values with zeros to n."""
    lin, _ = _pair()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    short = LinformerAttention(16, 2, seq_len=7, k=12).double().eval()
    short.load_state_dict({**lin.state_dict(), "seq.e": lin.seq.e[:, :7], "seq.f": lin.seq.f[:, :7]})
    torch.testing.assert_close(lin(x), short(x), atol=1e-12, rtol=1e-12)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    masked = lin(x, mask=mask[:, None, None, :])
    torch.testing.assert_close(masked[1, :5], lin(x[1:, :5])[0], atol=1e-12, rtol=1e-12)  # padding adds nothing


def test_shared_kv_and_shared_across_layers():
    p = SequenceProjection(10, 4, share_kv=True)
    a = LinformerAttention(8, 2, 10, 4, projection=p)
    b = LinformerAttention(8, 2, 10, 4, projection=p)
    assert a.seq.e is b.seq.e and p.f is None
    x = torch.randn(2, 10, 8, requires_grad=True)
    (a(x) + b(x)).sum().backward()
    assert p.e.grad is not None and p.e.grad.abs().sum() > 0


def test_cost_is_linear_in_length():
    lin = LinformerAttention(8, 2, seq_len=512, k=16)
    biggest = [0]

    def pack(t):
        biggest[0] = max(biggest[0], t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lin(torch.randn(1, 512, 8)).sum()
    assert biggest[0] < 512 * 512 // 4  # (T, k) scores and (T, C) activations, no (T, T)


def test_errors():
    with pytest.raises(ValueError, match="bidirectional only"):
        LinformerAttention(8, 2, 16, 4, causal=True)
    lin = LinformerAttention(8, 2, 16, 4)
    with pytest.raises(ValueError, match="fixed length of 16"):
        lin(torch.randn(1, 17, 8))
