"""T5 span corruption (Raffel et al. 2020, arXiv:1910.10683, section 3.1.4).

Of a sequence of L tokens, spans covering a fraction ``noise_density`` (15%) are dropped from
the input, each replaced by one sentinel, and the target lists the dropped spans, each behind
its sentinel::

    tokens   Thank you for inviting me to your party last week .
    inputs   Thank you <X> me to your party <Y> week . </s>
    targets  <X> for inviting <Y> last </s>

The counts are those of T5's ``random_spans_noise_mask`` (t5.data.preprocessors), exactly::

    n_noise = min(max(round(L * noise_density), 1), L - 1)         (L at least 2)
    n_spans = max(round(n_noise / mean_noise_span_length), 1)

and the n_noise noise tokens and the L - n_noise kept tokens are each cut into n_spans non-empty
spans uniformly at random (a random composition: n_spans - 1 cut points drawn without
replacement among the items' n - 1 gaps). The spans interleave kept, noise, kept, noise ...: the
sequence always starts with kept tokens and ends with noise. Rounding is Python's ``round``
(half to even), as TensorFlow's ``tf.round`` in T5's code.

Sentinel i is ``<extra_id_i>``; in T5's vocabulary its id is V - 1 - i
(:class:`genlab.tokenizers.unigram.UnigramTokenizer` lays its sentinels out the same way, and
passes them as ``sentinel_ids``).

:func:`t5_input_length` is T5's ``compute_input_and_target_lengths``: how many raw tokens to cut
so that the corrupted input is exactly ``inputs_length`` tokens (568 raw tokens -> 512 inputs and
114 targets at T5's settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from genlab.core.errors import ConfigError


@dataclass
class SpanCorruptionConfig:
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    add_eos: bool = True  # end inputs and targets with </s>, as T5's pipeline does


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) of a sequence of ``length`` tokens, T5's formulas (module docstring)."""
    length = max(length, 2)
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_spans = max(round(n_noise / mean_noise_span_length), 1)
    return n_noise, n_spans


def _random_segmentation(n_items: int, n_segments: int, generator: torch.Generator | None) -> torch.Tensor:
    """Lengths (n_segments,) of a uniformly random split of n_items into n_segments non-empty runs."""
    cuts = torch.zeros(n_items - 1, dtype=torch.bool)
    cuts[torch.randperm(n_items - 1, generator=generator)[: n_segments - 1]] = True
    segment_id = torch.cat([torch.zeros(1, dtype=torch.long), cuts.long()]).cumsum(0)  # (n_items,)
    return torch.bincount(segment_id, minlength=n_segments)


def random_spans_noise_mask(
    length: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool mask (length,): True at the noise tokens (T5's ``random_spans_noise_mask``)."""
    if not 0.0 < noise_density < 1.0 or mean_noise_span_length <= 0:
        raise ConfigError(f"noise_density={noise_density} must be in (0, 1) and mean_noise_span_length="
                          f"{mean_noise_span_length} positive")  # fmt: skip
    if length < 1:
        raise ConfigError("a sequence to corrupt needs at least one token")
    original, length = length, max(length, 2)
    n_noise, n_spans = noise_counts(length, noise_density, mean_noise_span_length)
    n_spans = min(n_spans, n_noise, length - n_noise)  # each run non-empty (T5 assumes this holds)
    noise_lengths = _random_segmentation(n_noise, n_spans, generator)
    kept_lengths = _random_segmentation(length - n_noise, n_spans, generator)
    interleaved = torch.stack([kept_lengths, noise_lengths], dim=1).reshape(-1)  # (2 n_spans,) kept, noise, ...
    span_starts = interleaved.cumsum(0)[:-1]
    start_indicator = torch.zeros(length, dtype=torch.long)
    start_indicator[span_starts] = 1
    is_noise = start_indicator.cumsum(0) % 2 == 1
    return is_noise[:original]


def _replace_spans(ids: torch.Tensor, spans: torch.Tensor, sentinels: torch.Tensor) -> torch.Tensor:
    """Each run of True in ``spans`` becomes its sentinel (the i-th run: sentinels[i]); the rest is kept."""
    starts = spans & ~torch.cat([torch.zeros(1, dtype=torch.bool), spans[:-1]])  # first token of each run
    run = starts.long().cumsum(0) - 1  # run index at each position
    out = torch.where(starts, sentinels[run.clamp(min=0)], ids)
    return out[~spans | starts]


def span_corrupt(
    ids: Sequence[int],
    sentinel_ids: Sequence[int],
    eos_id: int | None,
    config: SpanCorruptionConfig | None = None,
    generator: torch.Generator | None = None,
    noise_mask: torch.Tensor | None = None,
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of T5 span corruption of ``ids`` (without </s>; it is appended when
    ``config.add_eos``). ``noise_mask`` overrides the random mask (tests, inspection)."""
    cfg = config or SpanCorruptionConfig()
    x = torch.as_tensor(list(ids), dtype=torch.long)
    mask = (noise_mask if noise_mask is not None else
            random_spans_noise_mask(len(x), cfg.noise_density, cfg.mean_noise_span_length, generator))  # fmt: skip
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.shape != x.shape:
        raise ConfigError(f"noise_mask has shape {tuple(mask.shape)}, the ids {tuple(x.shape)}")
    n_runs = int((mask & ~torch.cat([torch.zeros(1, dtype=torch.bool), mask[:-1]])).sum())
    n_kept_runs = int((~mask & ~torch.cat([torch.ones(1, dtype=torch.bool), ~mask[:-1]])).sum())
    if max(n_runs, n_kept_runs) > len(sentinel_ids):
        raise ConfigError(f"{max(n_runs, n_kept_runs)} spans need more than the {len(sentinel_ids)} sentinels: "
                          "corrupt shorter sequences or add sentinels")  # fmt: skip
    sentinels = torch.as_tensor(list(sentinel_ids), dtype=torch.long)
    inputs = _replace_spans(x, mask, sentinels).tolist()
    # The target replaces each *kept* run by a sentinel; runs are numbered so that sentinel i
    # stands before noise span i (a leading noise span, possible only with a given mask, gets none).
    kept = ~mask
    if len(x) and mask[0]:
        targets = _replace_spans(x, kept, sentinels[1:] if len(sentinels) > 1 else sentinels).tolist()
        targets = [int(sentinels[0]), *targets]
    else:
        targets = _replace_spans(x, kept, sentinels).tolist()
    if targets and bool(kept[-1]):
        targets = targets[:-1]  # a trailing kept run's sentinel has no span after it
    if cfg.add_eos and eos_id is not None:
        inputs.append(eos_id)
        targets.append(eos_id)
    return inputs, targets


def t5_input_length(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(raw tokens to cut, targets length) so that span corruption leaves ``inputs_length`` input
    tokens, each side with its </s> (T5's ``compute_input_and_target_lengths``)."""

    def lengths(tokens: int) -> tuple[int, int]:
        n_noise = round(tokens * noise_density)
        n_spans = round(n_noise / mean_noise_span_length)
        return tokens - n_noise + n_spans + 1, n_noise + n_spans + 1

    tokens = inputs_length - 1
    while lengths(tokens + 1)[0] <= inputs_length:
        tokens += 1
    inputs, targets = lengths(tokens)
    if noise_density == 0.5 and targets > inputs:  # T5's special case: keep targets within inputs
        tokens -= 1
        targets -= 1
    return tokens, targets
