"""training/parallel.py in one process: the sharding rule, the auto choice, the meta skeleton,
activation checkpointing, and FSDP2 over a gloo group of one (the whole shard / gather / load path,
fast). The 2-process comparisons are in test_fsdp.py."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.models import build_model
from genlab.models.heads import ScoreModel
from genlab.objectives.causal_lm import causal_lm_loss
from genlab.training import parallel as par
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime, unwrap

CPU = torch.device("cpu")


def _gpt(**over):
    torch.manual_seed(0)
    cfg = preset("gpt-micro")
    for k, v in {"pos": "rope", **over}.items():  # rope: non-persistent rotary tables to keep
        setattr(cfg, k, v)
    return build_model(cfg)


def _batch(vocab: int, seed: int = 0, B: int = 4, T: int = 16):
    x = torch.randint(0, vocab, (B, T + 1), generator=torch.Generator().manual_seed(seed))
    return x[:, :-1], x[:, 1:]


def _steps(model, opt, n: int) -> list[float]:
    losses = []
    for i in range(n):
        opt.zero_grad(set_to_none=True)
        loss = causal_lm_loss(model, _batch(model.config.vocab_size, i))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def group(tmp_path):
    """A gloo process group of one process (FSDP2 runs in it exactly as with more)."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_bad_parallel_and_families_without_a_rule_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown train.parallel 'zero3'"):
        Runtime.from_env("cpu", "fp32", "zero3")
    cnn = build_model(preset("cnn-fashion"))
    with pytest.raises(ConfigError, match="CNN family has no sharding rule"):
        Runtime(CPU, torch.float32, parallel="fsdp").wrap(cnn)
    with pytest.raises(ConfigError, match="no sharding rule"):
        Runtime(CPU, torch.float32, activation_checkpointing=True).wrap(cnn)


def test_fsdp_in_one_process_trains_unsharded_with_a_note():
    model = _gpt()
    with pytest.warns(UserWarning, match="nothing to shard"):
        wrapped = Runtime(CPU, torch.float32, parallel="fsdp").wrap(model)
    assert wrapped is model and not par.is_sharded(model)


def test_auto_is_ddp_while_the_state_fits_and_fsdp_past_it(monkeypatch):
    assert par.memory_per_process(CPU, 1) > par.memory_per_process(CPU, 4) > 0
    model = _gpt()
    assert par.choose("auto", model, CPU, 2) == "ddp"
    assert par.choose("fsdp", model, CPU, 2) == "fsdp" and par.choose("ddp", model, CPU, 2) == "ddp"
    state = par.STATE_BYTES_PER_PARAM * sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(par, "memory_per_process", lambda device, n: int(state / par.AUTO_STATE_SHARE) - 1)
    assert par.choose("auto", model, CPU, 2) == "fsdp"
    assert par.choose("auto", build_model(preset("cnn-fashion")), CPU, 2) == "ddp"  # no rule: stays ddp


def test_every_shardable_family_lists_its_blocks():
    gpt = _gpt()
    assert par.shard_units(gpt) == list(gpt.blocks)
    assert par.shard_units(ScoreModel(gpt)) == list(gpt.blocks)
    s2s = build_model(preset("seq2seq-micro"))
    assert par.shard_units(s2s) == [*s2s.encoder, *s2s.decoder]
    bert = build_model(preset("bert-micro"))
    assert par.shard_units(bert) == list(bert.blocks)
    albert = build_model(preset("albert-mini"))  # one block used n_layer times: one group for all
    assert par.shard_units(albert) == []


def test_tied_aliases_and_the_meta_skeleton_keep_ties_and_buffers():
    model = _gpt()
    assert par.tied_aliases(model) == {"head.weight": "tok_emb.weight"}
    skel = par._meta_skeleton(model)
    assert all(p.is_meta for p in skel.parameters())
    assert skel.head.weight is skel.tok_emb.weight
    kept = [b for b in skel.buffers() if not b.is_meta]
    assert kept and all(torch.equal(a, b) for a, b in zip(kept, [b for b in model.buffers() if not b.is_meta]))
    # A full state dict materialises into a plain copy that computes what the model does.
    plain = par._materialise(skel, {k: v.clone() for k, v in model.state_dict().items()})
    assert plain.head.weight is plain.tok_emb.weight
    x, _ = _batch(model.config.vocab_size)
    torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)


def test_activation_checkpointing_gives_the_same_losses_and_gradients():
    ref, ckpt = _gpt(), _gpt()
    Runtime(CPU, torch.float32, activation_checkpointing=True).wrap(ckpt)
    assert ckpt.state_dict().keys() == ref.state_dict().keys()
    batch = _batch(ref.config.vocab_size)
    for m in (ref, ckpt):
        causal_lm_loss(m, batch).backward()
    for (name, a), b in zip(ref.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_sharded_training_gathers_saves_and_loads_like_one_process(group):
    ref = _gpt()
    model = copy.deepcopy(ref)
    par.shard(model, torch.float32)
    assert par.is_sharded(model) and type(model.blocks[0].attn.qkv.weight).__name__ == "DTensor"
    opt_ref, opt = adamw(ref, 1e-2), adamw(model, 1e-2)
    assert _steps(model, opt, 3) == pytest.approx(_steps(ref, opt_ref, 3), abs=1e-6)
    # The gathered copy: plain tensors, the reference's weights, ties kept; unwrap finds it.
    plain = par.consolidate(model, main=True)
    assert unwrap(model) is plain and plain.head.weight is plain.tok_emb.weight
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    # The optimizer state, gathered: a one-process optimizer's, integer keys and all.
    full, want = par.full_optimizer_state(model, opt), opt_ref.state_dict()
    assert full["state"].keys() == want["state"].keys()
    assert [g["params"] for g in full["param_groups"]] == [g["params"] for g in want["param_groups"]]
    for i, s in want["state"].items():
        torch.testing.assert_close(full["state"][i]["exp_avg_sq"], s["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    # A fresh sharded model takes the reference's weights and optimizer state, and continues as it does.
    again = _gpt()
    with torch.no_grad():
        for p in again.parameters():
            p.add_(1.0)  # other weights: the loaded ones must replace them
    par.shard(again, torch.float32)
    opt_again = adamw(again, 1e-2)
    tensors = {k: v.clone() for k, v in ref.state_dict().items() if k != "head.weight"}  # as a checkpoint holds them
    par.load_full_state(again, tensors)
    par.load_full_optimizer_state(again, opt_again, copy.deepcopy(opt_ref.state_dict()))  # (a copy, as read from disk)
    assert _steps(again, opt_again, 2) == pytest.approx(_steps(ref, opt_ref, 2), abs=1e-6)
