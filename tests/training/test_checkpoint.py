import subprocess
import sys
import textwrap
import time

import pytest
import torch

from genlab.core.errors import CheckpointError
from genlab.core.registry import preset
from genlab.models.gpt import GPT
from genlab.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint


def test_round_trip_of_nested_state(tmp_path):
    model = GPT(preset("gpt-micro"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()
    state = {"optimizers": {"model": opt.state_dict()}, "rng": (1, [2, 3], None), "t": torch.arange(3)}
    save_checkpoint(tmp_path, 5, {"model": model}, state, ("last", "best"))
    other = GPT(preset("gpt-micro"))
    loaded = load_checkpoint(find_checkpoint(tmp_path, "best"), {"model": other})
    assert loaded["rng"] == (1, [2, 3], None) and torch.equal(loaded["t"], torch.arange(3))
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    opt2 = torch.optim.AdamW(other.parameters(), lr=1e-3)
    from genlab.training.checkpoint import load_optimizer_state

    load_optimizer_state(opt2, loaded["optimizers"]["model"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_only_pointed_checkpoints_are_kept(tmp_path):
    model = GPT(preset("gpt-micro"))
    save_checkpoint(tmp_path, 1, {"model": model}, {}, ("last", "best"))
    save_checkpoint(tmp_path, 2, {"model": model}, {}, ("last",))
    save_checkpoint(tmp_path, 3, {"model": model}, {}, ("last",))
    dirs = sorted(p.name[:13] for p in tmp_path.iterdir() if p.is_dir())
    assert dirs == ["step-00000001", "step-00000003"]


def test_truncated_and_wrong_shape_checkpoints_are_clear_errors(tmp_path):
    model = GPT(preset("gpt-micro"))
    path = save_checkpoint(tmp_path, 1, {"model": model}, {})
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path, {"model": GPT(preset("gpt-micro"))})
    path = save_checkpoint(tmp_path, 2, {"model": model}, {})
    wider = GPT(preset("gpt-nano"))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path, {"model": wider})


WRITER = textwrap.dedent(
    """
    import sys, torch
    from genlab.training.checkpoint import save_checkpoint
    model = torch.nn.Linear(1024, 2048)  # 8 MB of weights per checkpoint
    step = 0
    while True:
        step += 1
        with torch.no_grad():
            model.weight.fill_(step)
        save_checkpoint(__import__("pathlib").Path(sys.argv[1]), step, {"model": model}, {"step": step})
        print(step, flush=True)
    """
)


def test_kill_9_during_writes_leaves_a_loadable_checkpoint(tmp_path):
    root = tmp_path / "ckpt"
    for delay in (0.9, 1.3, 1.7):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one checkpoint is complete
        time.sleep(delay)
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait()
        model = torch.nn.Linear(1024, 2048)
        state = load_checkpoint(find_checkpoint(root, "last"), {"model": model})
        assert model.weight[0, 0].item() == state["step"]
