"""torchrun with 2 CPU processes (gloo) matches one process at the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import tiny_recipe

from genlab.recipes.lm import load_run


def _run(args, env):
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r], [r["val_loss"] for r in rows if "val_loss" in r]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_processes_match_one_at_the_same_global_batch(tiny_text, tmp_path):
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = tiny_recipe(tiny_text, max_steps=12, batch_size=8, eval_interval=6)
    two = tiny_recipe(tiny_text, max_steps=12, batch_size=4, eval_interval=6)  # per process: 2 x 4 = 8
    for name, recipe in (("one", one), ("two", two)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    _run([sys.executable, "-m", "genlab", "train", str(tmp_path / "one.yaml"), "--out", str(tmp_path / "one")], env)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    _run([*torchrun, "-m", "genlab", "train", str(tmp_path / "two.yaml"), "--out", str(tmp_path / "two")], env)
    train1, val1 = _losses(tmp_path / "one")
    train2, val2 = _losses(tmp_path / "two")
    assert len(train1) == len(train2) == 12
    assert train1[-1] < train1[0]
    for a, b in zip(train1 + val1, train2 + val2):
        assert abs(a - b) < 1e-4, (train1, train2)
    w1 = load_run(tmp_path / "one", "last")[0].state_dict()
    w2 = load_run(tmp_path / "two", "last")[0].state_dict()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=1e-4)
