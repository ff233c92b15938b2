"""Endless, shuffled, resumable mini-batches of item indices: the data order of every genlab
training run on a finite dataset (images, labelled texts).

Tier 1: imports only ``genlab.core``, numpy and torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from genlab.core.errors import DataError


class ShuffledBatches:
    """Endless shuffled mini-batches: ``collate(indices)`` for B item indices at a time.

    Each epoch is a fresh permutation of ``range(n)`` from a seeded ``torch.Generator`` (the
    ragged tail of an epoch is dropped). With ``lengths`` and ``bucket`` > 1, each run of
    ``bucket`` global batches of the permutation is sorted by length, cut into batches and the
    batches shuffled: a batch then holds sequences of similar length (little padding) while
    which items share a batch stays random. The state (the generator before this epoch's draws
    and the position in the epoch) resumes exactly. Under data parallelism every rank draws the
    same permutation and takes its slice of each global batch, so N processes see what one
    process with the global batch sees.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        collate: Callable[[np.ndarray], Any],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lengths: Sequence[int] | np.ndarray | None = None,
        bucket: int = 0,
    ):
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        if n < batch_size * world_size:
            raise DataError(f"{n} examples cannot fill a global batch of {batch_size * world_size}")
        self.n, self.collate = n, collate
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        if lengths is not None and len(lengths) != n:
            raise DataError(f"lengths has {len(lengths)} entries for {n} examples")
        self.lengths = None if lengths is None or bucket <= 1 else np.asarray(lengths)
        self.bucket = bucket
        self.generator = torch.Generator().manual_seed(seed)
        self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch_state = self.generator.get_state()
        perm = torch.randperm(self.n, generator=self.generator).numpy()
        if self.lengths is not None:
            glob = self.batch_size * self.world_size
            perm = perm[: len(perm) // glob * glob].reshape(-1, glob)  # (batches, glob)
            runs = []
            for start in range(0, len(perm), self.bucket):
                items = perm[start : start + self.bucket].reshape(-1)
                batches = items[np.argsort(self.lengths[items], kind="stable")].reshape(-1, glob)
                runs.append(batches[torch.randperm(len(batches), generator=self.generator).numpy()])
            perm = np.concatenate(runs).reshape(-1)
        self.perm = perm
        self.pos = 0

    def __iter__(self) -> ShuffledBatches:
        return self

    def __next__(self) -> Any:
        glob = self.batch_size * self.world_size
        if self.pos + glob > len(self.perm):
            self._new_epoch()
        start = self.pos + self.rank * self.batch_size
        self.pos += glob
        return self.collate(self.perm[start : start + self.batch_size])

    def state_dict(self) -> dict:
        return {"generator": self._epoch_state, "pos": self.pos, "global_batch_size": self.batch_size * self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state["global_batch_size"] != self.batch_size * self.world_size:
            raise DataError("resume with the same global batch size the run was started with")
        self.generator.set_state(state["generator"])
        self._new_epoch()
        self.pos = int(state["pos"])
