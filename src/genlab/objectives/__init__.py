"""Tier 3: training objectives. Each wraps a model passed in as an argument."""

from genlab.objectives.distill import distillation_loss, init_student_from_teacher, student_layer_map
from genlab.objectives.electra import electra_loss, electra_step, replaced_token_detection
from genlab.objectives.masked_lm import (
    SentencePair,
    collate_pairs,
    gather_span_boundaries,
    mask_tokens,
    masked_lm_loss,
    next_sentence_pairs,
    sentence_order_pairs,
    span_length_probs,
    span_mask,
)

__all__ = [
    "SentencePair",
    "collate_pairs",
    "distillation_loss",
    "electra_loss",
    "electra_step",
    "gather_span_boundaries",
    "init_student_from_teacher",
    "mask_tokens",
    "masked_lm_loss",
    "next_sentence_pairs",
    "replaced_token_detection",
    "sentence_order_pairs",
    "span_length_probs",
    "span_mask",
    "student_layer_map",
]
