"""Tokenized sets for encoders: the padded tokens a run counts are the tokens of its batches."""

import numpy as np
import pytest

from genlab.core.errors import ConfigError
from genlab.data.tokenized import padded_tokens, shuffled_batches, step_tokens, token_limit
from genlab.tokenizers import WordPieceTokenizer

TEXTS = [" ".join(["word"] * (1 + i % 7) + ["other"] * (i % 3)) for i in range(40)]


def test_replayed_step_tokens_equal_the_training_batches():
    tok = WordPieceTokenizer.train(TEXTS, vocab_size=60)
    done = tok.tokenize(TEXTS, max_length=16)
    labels = np.arange(len(TEXTS))
    batches = shuffled_batches(tok, done, labels, batch_size=4, seed=3, bucket=5)
    seen = [next(batches) for _ in range(12)]  # crosses an epoch
    replay = step_tokens(done, 4, 3, 5)
    assert [b["input_ids"].numel() for b in seen] == [next(replay) for _ in range(12)]
    assert padded_tokens(done, 4, 3, 5, 12) == sum(b["input_ids"].numel() for b in seen)
    # with gradient accumulation a step is grad_accum batches of the same sampler
    assert padded_tokens(done, 2, 3, 5, 6, grad_accum=2) == padded_tokens(done, 2, 3, 5, 12)


def test_token_limit():
    assert token_limit(0, 32, "data") == 32 and token_limit(16, 32, "data") == 16
    with pytest.raises(ConfigError, match="exceeds the model's position table of 32 tokens"):
        token_limit(64, 32, "data")
    with pytest.raises(ConfigError, match="must be >= 0"):
        token_limit(-1, 32, "data")
