import os
from pathlib import Path

import pytest
import torch

# Tiny test models gain nothing from threads, and one thread keeps timings sane on a busy machine.
torch.set_num_threads(1)
os.environ.setdefault("GENLAB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own GENLAB_HOME (token caches, data) and a fixed seed."""
    home = tmp_path_factory.mktemp("genlab_home")
    monkeypatch.setenv("GENLAB_HOME", str(home))
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_text():
    """The first 40,000 characters of tinyshakespeare, shipped with the tests."""
    return Path(__file__).parent / "fixtures" / "shakespeare-40k.txt"


def tiny_recipe(source, **train) -> dict:
    """A gpt-micro language-model recipe that trains in about a second.

    It pins ``dtype: fp32``: the tests that use it compare numbers across runs, resumes and
    process counts, and must give the same answer with ``GENLAB_DTYPE`` set. Pass
    ``dtype="auto"`` (or ``"bf16"``) for a run that follows the machine (or bf16 autocast).
    """
    base = {
        "dtype": "fp32",
        "max_steps": 20,
        "batch_size": 4,
        "lr": 3e-3,
        "warmup_steps": 2,
        "eval_interval": 10,
        "eval_batches": 2,
        "log_interval": 1,
        "progress": False,
        "tensorboard": False,
    }
    return {
        "task": "lm",
        "model": {"preset": "gpt-micro"},
        "data": {"source": str(source)},
        "train": {**base, **train},
        "sample": {"num_samples": 0},
    }
