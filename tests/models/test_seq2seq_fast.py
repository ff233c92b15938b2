"""The seq2seq fast paths against their references: teacher forcing on the real tokens only
(``pack_padding``) and one token-table lookup for source and target, forward and backward."""

import dataclasses

import pytest
import torch
from test_seq2seq import VARIANTS, random_model

from genlab.models.seq2seq import Rows, Seq2Seq


def padded_batch(cfg, seed=0):
    """Three rows: full, padded by a third, and padded to a single token."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, cfg.vocab_size, (3, 9), generator=g)
    mask = torch.ones_like(src)
    mask[1, 6:] = 0
    mask[2, 1:] = 0
    src[mask == 0] = cfg.pad_id
    return src, mask, torch.randint(3, cfg.vocab_size, (3, 7), generator=g)


def pair(cfg):
    """The fast model and its reference (pack_padding=False), the same weights, in training mode."""
    fast = random_model(cfg).train()
    ref = Seq2Seq(dataclasses.replace(cfg, pack_padding=False)).train()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def loss_and_grads(model, src, mask, tgt):
    logits = model(src, mask, tgt).logits  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.roll(-1, 1).flatten())
    loss.backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_packed_teacher_forcing_equals_the_padded_reference(variant):
    cfg = VARIANTS[variant]
    assert cfg.pack_padding and cfg.dropout == 0.0
    fast, ref = pair(cfg)
    inputs = padded_batch(cfg)
    logits, grads = loss_and_grads(fast, *inputs)
    ref_logits, ref_grads = loss_and_grads(ref, *inputs)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and len(grads) == len(list(fast.parameters()))
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_packing_also_equals_the_reference_with_eager_attention():
    cfg = dataclasses.replace(VARIANTS["bart"], attention="eager")
    fast, ref = pair(cfg)
    inputs = padded_batch(cfg, seed=3)
    logits, grads = loss_and_grads(fast, *inputs)
    ref_logits, ref_grads = loss_and_grads(ref, *inputs)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_equals_encode_then_decode_with_gradients(variant):
    """forward (packed, one lookup, a sparse lookup gradient when tied) against the decoding path's
    plain pieces (encode and decode: padded, a dense lookup per stack), logits and gradients."""
    cfg = VARIANTS[variant]
    fast, ref = pair(cfg)
    src, mask, tgt = padded_batch(cfg, seed=1)
    logits, grads = loss_and_grads(fast, src, mask, tgt)
    plain = ref.decode(tgt, ref.encode(src, mask), mask)  # (B, T, V)
    torch.nn.functional.cross_entropy(plain.flatten(0, 1), tgt.roll(-1, 1).flatten()).backward()
    torch.testing.assert_close(logits, plain.detach(), rtol=1e-5, atol=1e-5)
    for name, p in ref.named_parameters():
        assert grads[name].layout == torch.strided, name  # dense, as every optimizer expects
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_the_tied_table_gets_a_dense_gradient_that_fused_adamw_steps():
    cfg = VARIANTS["t5"]
    model = random_model(cfg).train()
    assert model._sparse_lookup()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    before = model.enc_emb.weight.detach().clone()
    loss_and_grads(model, *padded_batch(cfg))
    assert model.enc_emb.weight.grad.layout == torch.strided
    opt.step()
    assert not torch.equal(before, model.enc_emb.weight)
    with torch.no_grad():
        assert not model._sparse_lookup()  # nothing to differentiate: a plain lookup


def test_rows_pack_and_unpack_the_real_tokens():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rows = Rows.of(mask)
    assert rows.index.tolist() == [0, 1, 2, 3] and rows.positions.tolist() == [0, 1, 2, 0]
    x = torch.arange(6.0).view(2, 3, 1)  # (B, S, 1)
    assert rows.pack(x).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert rows.unpack(rows.pack(x)).flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 0.0, 0.0]
    assert Rows.of(torch.ones(2, 3, dtype=torch.long)) is None  # nothing to skip


def test_a_batch_without_padding_takes_the_reference_path():
    cfg = VARIANTS["t5"]
    fast, ref = pair(cfg)
    src, _, tgt = padded_batch(cfg)
    mask = torch.ones_like(src)
    with torch.no_grad():
        torch.testing.assert_close(fast(src, mask, tgt).logits, ref(src, mask, tgt).logits, rtol=0, atol=0)


def test_packing_with_dropout_trains_and_matches_the_reference_in_eval_mode():
    cfg = dataclasses.replace(VARIANTS["pegasus"], dropout=0.1)
    fast, ref = pair(cfg)
    inputs = padded_batch(cfg, seed=2)
    _, grads = loss_and_grads(fast, *inputs)  # dropout on the packed rows
    assert all(torch.isfinite(g).all() for g in grads.values())
    fast.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(*inputs).logits, ref(*inputs).logits, rtol=1e-5, atol=1e-5)
