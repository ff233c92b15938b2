"""Tiny GPT-2-shaped models with the same weights in genlab and in transformers, and a character
tokenizer for TRL (built locally; nothing comes from a hub)."""

import functools
import os

import torch

from genlab.models.gpt import GPT, GPTConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

CHARS = [chr(i) for i in range(32, 127)]
PAD, EOS = len(CHARS), len(CHARS) + 1
VOCAB = len(CHARS) + 2


def tiny_gpt(seed: int = 0, vocab: int = VOCAB) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab, block_size=64, n_layer=2, n_head=2, n_embd=32, mlp="gelu_tanh")
    return GPT(cfg).eval()


def hf_config(model: GPT, **extra):
    from transformers import GPT2Config

    from genlab.models.convert.gpt2 import genlab_config_to_hf

    skip = ("architectures", "model_type", "dtype", "pad_token_id", "bos_token_id", "eos_token_id")
    fields = {k: v for k, v in genlab_config_to_hf(model.config).items() if k not in skip}
    return GPT2Config(**fields, pad_token_id=PAD, bos_token_id=EOS, eos_token_id=EOS, **extra)


def hf_lm(model: GPT):
    """transformers' GPT2LMHeadModel holding ``model``'s weights."""
    from transformers import GPT2LMHeadModel

    from genlab.models.convert.gpt2 import genlab_state_to_hf

    hf = GPT2LMHeadModel(hf_config(model))
    hf.load_state_dict(genlab_state_to_hf(model.state_dict(), model.config), strict=False)
    return hf.eval()


@functools.cache
def hf_tokenizer():
    """A character-level PreTrainedTokenizerFast: ids 0..94 printable ASCII, then <pad>, <eos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(CHARS)} | {"<pad>": PAD, "<eos>": EOS}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>")
