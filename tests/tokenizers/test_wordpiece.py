"""WordPiece (BERT): MiniLM's tokenizer.json, padded batches, truncation by option, training, files."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from genlab.core.errors import TokenizerError
from genlab.runs.encoders import minilm_dir
from genlab.tokenizers import WordPieceTokenizer, load_tokenizer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
VARIED = [
    "Hello, world!",
    "Héllo wörld: naïve café, Ça va?",
    "東京タワー and 漢字 split per character",
    "unaffable antidisestablishmentarianism",
    "tabs\tand\nnewlines   and  spaces",
    "“Curly quotes” — and dashes…",
    "emoji 👋🏽 become [UNK]",
    "Numbers 3.14159 and 1,000,000",
]


@pytest.fixture(scope="module")
def tok() -> WordPieceTokenizer:
    return load_tokenizer(minilm_dir())


def test_load_tokenizer_recognises_wordpiece_and_clears_the_files_padding(tok):
    assert isinstance(tok, WordPieceTokenizer) and tok.kind == "wordpiece"
    assert tok.vocab_size == 30522
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    raw = json.loads((minilm_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    assert raw["padding"] is not None  # MiniLM's file pads everything to 128 ...
    assert len(tok.encode("hello world", add_special_tokens=True)) == 4  # ... the wrapper does not


def test_ids_match_the_vocab_txt_tokenizer_of_transformers(tok):
    """transformers builds BERT's tokenizer from vocab.txt, not from tokenizer.json."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertTokenizer(str(minilm_dir() / "vocab.txt"), do_lower_case=True)
    assert tok.tokenize(VARIED).ids == reference(VARIED)["input_ids"]
    pairs = [("what is it?", "a test"), ("one", "two three")]
    want = reference([a for a, _ in pairs], [b for _, b in pairs])
    got = tok.tokenize(pairs)
    assert got.ids == want["input_ids"] and got.type_ids == want["token_type_ids"]


def test_encode_decode_and_special_tokens(tok):
    ids = tok.encode("Unaffable!")
    assert tok.decode(ids) == "unaffable!"
    assert [tok.id_to_token(i) for i in ids][:2] == ["una", "##ffa"]
    assert tok.encode("[MASK] me", add_special_tokens=True)[:2] == [tok.cls_id, tok.mask_id]
    assert tok.decode([tok.cls_id, *ids, tok.sep_id], skip_special_tokens=True) == "unaffable!"
    assert tok.encode_np("a b").dtype == np.int64
    with pytest.raises(TokenizerError, match="outside the vocabulary of 30522"):
        tok.decode([30522])


def test_padded_batches_with_masks_and_segments(tok):
    batch = tok.encode_batch(["a b c d", "hi", ("question?", "answer")])
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.token_type_ids.shape == (3, 6)
    assert batch.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0], [1] * 6]
    assert batch.input_ids[1].tolist()[3:] == [tok.pad_id] * 3
    assert batch.input_ids[:, 0].tolist() == [tok.cls_id] * 3
    assert batch.token_type_ids[2].tolist() == [0, 0, 0, 0, 1, 1]
    assert batch.input_ids.dtype == np.int64
    rows = tok.pad(tok.tokenize(["a b c d", "hi"]), rows=[1])
    assert rows.input_ids.tolist() == [[tok.cls_id, tok.encode("hi")[0], tok.sep_id]]


def test_truncation_warns_errors_or_stays_silent(tok):
    long = " ".join(["word"] * 20)  # 22 tokens with [CLS] and [SEP]
    with pytest.warns(UserWarning, match=r"1 of 2 texts are longer than max_length=8 tokens.*longest has 22"):
        batch = tok.encode_batch(["short", long], max_length=8)
    assert batch.input_ids.shape == (2, 8) and batch.input_ids[1, -1] == tok.sep_id  # [SEP] kept
    with pytest.raises(TokenizerError, match="text 1 has 22 tokens, more than max_length=8"):
        tok.tokenize(["short", long], max_length=8, truncation="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = tok.tokenize(["short", long, long], max_length=8, truncation="silent")
    assert done.truncated == [1, 2] and done.lengths.tolist() == [3, 22, 22] and len(done.ids[1]) == 8
    pair = tok.tokenize([(long, "tail end")], max_length=12, truncation="silent")
    assert len(pair.ids[0]) == 12 and pair.type_ids[0][-1] == 1  # longest first: B survives
    with pytest.raises(TokenizerError, match="truncation='cut'"):
        tok.tokenize(["x"], truncation="cut")
    with pytest.raises(TokenizerError, match="not a string"):
        tok.tokenize(["x", 3])


def test_empty_text_is_just_cls_sep(tok):
    assert tok.tokenize(["", "\u200b\x00"]).ids == [[tok.cls_id, tok.sep_id]] * 2


def test_train_save_load_round_trip(tmp_path):
    text = FIXTURE.read_text(encoding="utf-8")[:20000]
    tok = WordPieceTokenizer.train(text, vocab_size=300)
    assert tok.vocab_size == 300
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    ids = tok.encode("First Citizen: speak, speak.")
    assert tok.decode(ids) == "first citizen : speak, speak."
    path = tok.save(tmp_path / "run")
    again = load_tokenizer(tmp_path / "run")
    assert isinstance(again, WordPieceTokenizer) and again.fingerprint() == tok.fingerprint()
    assert again.tokenize(["Before we proceed"]).ids == tok.tokenize(["Before we proceed"]).ids
    assert load_tokenizer(path).fingerprint() == tok.fingerprint()


def test_files_without_bert_special_tokens_are_refused(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=r"has no \[PAD\], \[CLS\], \[SEP\], \[MASK\] token"):
        load_tokenizer(tmp_path)
