"""Unigram (SentencePiece-style) tokenizer: layout of the special ids and sentinels, round trips,
deterministic training, save/load, and the same ids from ``transformers``' fast tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.core.errors import TokenizerError
from genlab.tokenizers import load_tokenizer
from genlab.tokenizers.unigram import SPECIAL_TOKENS, UnigramTokenizer, sentinel_token

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
FRENCH = [
    "Choisissez Outils - Macros, puis cliquez sur Nouveau.",
    "La boîte de dialogue s'ouvre et contient un formulaire vide.",
    "Créer un dialogue Basic en français, avec des accents : é è à ç ô.",
]


def _texts() -> list[str]:
    lines = [line for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines + FRENCH * 20


@pytest.fixture(scope="module")
def tok() -> UnigramTokenizer:
    return UnigramTokenizer.train(_texts(), vocab_size=1200)


def test_special_ids_and_sentinels_follow_t5(tok: UnigramTokenizer) -> None:
    assert tok.vocab_size == 1200
    assert (tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2)  # T5's
    assert [tok.id_to_token(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)
    assert len(tok.sentinel_ids) == 100
    assert tok.sentinel_id(0) == 1199 and tok.sentinel_id(99) == 1100  # <extra_id_0> is the last id
    assert tok.id_to_token(tok.sentinel_id(7)) == sentinel_token(7) == "<extra_id_7>"
    with pytest.raises(TokenizerError, match="sentinel 100 does not exist"):
        tok.sentinel_id(100)


def test_encode_appends_eos_and_round_trips(tok: UnigramTokenizer) -> None:
    for text in ["To be, or not to be: that is the question.", *FRENCH]:
        ids = tok.encode(text)
        assert ids[-1] == tok.eos_id and tok.eos_id not in ids[:-1]
        assert tok.encode(text, add_eos=False) == ids[:-1]
        assert tok.decode(ids, skip_special_tokens=True) == text
        assert tok.decode(ids) == text + "</s>"
    assert tok.encode_batch(["a b", "c"]) == [tok.encode("a b"), tok.encode("c")]


def test_sentinels_and_masks_are_single_tokens(tok: UnigramTokenizer) -> None:
    ids = tok.encode("hello <extra_id_0> world <extra_id_1> <mask> <mask_1>", add_eos=False)
    for special in (tok.sentinel_id(0), tok.sentinel_id(1), tok.mask_id, tok.sentence_mask_id):
        assert special in ids
    assert tok.decode(ids, skip_special_tokens=True).split() == ["hello", "world"]


def test_unknown_characters_map_to_unk(tok: UnigramTokenizer) -> None:
    ids = tok.encode("漢", add_eos=False)
    assert tok.unk_id in ids


def test_training_is_deterministic() -> None:
    texts = _texts()
    a = UnigramTokenizer.train(texts, vocab_size=900)
    b = UnigramTokenizer.train(texts, vocab_size=900)
    assert a.fingerprint() == b.fingerprint()
    assert json.loads(a.hf.to_str())["model"]["vocab"] == json.loads(b.hf.to_str())["model"]["vocab"]


def test_save_and_load(tok: UnigramTokenizer, tmp_path: Path) -> None:
    path = tok.save(tmp_path)
    back = load_tokenizer(tmp_path)
    assert isinstance(back, UnigramTokenizer) and back.kind == "unigram"
    assert back.fingerprint() == tok.fingerprint()
    assert back.sentinel_ids == tok.sentinel_ids
    assert back.encode(FRENCH[0]) == tok.encode(FRENCH[0])
    assert path.name == "tokenizer.json"


def test_transformers_fast_tokenizer_gives_the_same_ids(tok: UnigramTokenizer, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok.save(tmp_path)))
    for text in FRENCH:
        assert hf(text)["input_ids"] == tok.encode(text)


def test_bad_inputs_are_one_line_errors(tok: UnigramTokenizer) -> None:
    with pytest.raises(TokenizerError, match="leaves .* learned pieces"):
        UnigramTokenizer.train(["abc"], vocab_size=100)
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([5, 99999])
    with pytest.raises(TokenizerError, match="text 1 is a int"):
        tok.encode_batch(["ok", 3])  # type: ignore[list-item]
