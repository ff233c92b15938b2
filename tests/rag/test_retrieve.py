"""Retrieval: reciprocal rank fusion on hand-made rankings; dense, BM25 and hybrid search with filters."""

from __future__ import annotations

import numpy as np
import pytest
from test_ingest import CountingEmbed, tiny_encoder, write

from genlab.core.errors import ConfigError, TokenizerError
from genlab.rag.ingest import ingest, model_info
from genlab.rag.retrieve import Retriever, reciprocal_rank_fusion
from genlab.rag.store import Store


def test_rrf_by_hand():
    # d1: 1/(60+1) + 1/(60+3); d2: 1/(60+2) + 1/(60+1); d3: 1/(60+3); d4: 1/(60+2)
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [2, 4, 1]], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 63)
    assert fused[2] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[3] == pytest.approx(1 / 63) and fused[4] == pytest.approx(1 / 62)
    assert [d for d, _ in reciprocal_rank_fusion([[1, 2, 3], [2, 4, 1]], k=60)] == [2, 1, 4, 3]


def test_rrf_rewards_agreement_over_one_top_rank_and_breaks_ties_by_first_sight():
    # a is first in one list only; b is second in both: 2/(k+2) > 1/(k+1) for every k > 0
    assert reciprocal_rank_fusion([["a", "b"], ["c", "b"]], k=60)[0][0] == "b"
    # with k = 0 a single first place (1/1) beats two second places (1/2 + 1/2 = 1): a tie, first seen wins
    assert [d for d, _ in reciprocal_rank_fusion([["a", "b"], ["c", "b"]], k=0)] == ["a", "b", "c"]
    assert reciprocal_rank_fusion([[5], [6]])[0][0] == 5  # equal scores: the first ranking's item
    assert reciprocal_rank_fusion([]) == []
    weighted = dict(reciprocal_rank_fusion([[1], [2]], k=0, weights=[1.0, 3.0]))
    assert weighted == {1: 1.0, 2: 3.0}
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1]], weights=[1, 2])


@pytest.fixture
def retriever(tmp_path, monkeypatch):
    encoder = tiny_encoder()
    src = tmp_path / "kb"
    write(src / "fruit" / "apple.md", "# Apple\n\nThe apple is a red fruit that grows on trees.\n")
    write(src / "fruit" / "banana.md", "# Banana\n\nThe banana is a long yellow fruit.\n")
    write(src / "tools" / "hammer.txt", "Hammer\n\nA hammer drives nails into wood.\n")
    embed = CountingEmbed()
    store = Store.open(tmp_path / "idx", create=True)
    ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=embed)
    r = Retriever(store, encoder, model_info(encoder, "tiny"))
    monkeypatch.setattr(r, "embed_query", lambda q: embed([q]))  # the same bag of words for queries
    yield r
    store.close()


def test_dense_bm25_and_hybrid_find_the_matching_chunk(retriever):
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.search("which fruit is yellow and long?", mode, k=3)
        assert hits[0].chunk.doc_id == "fruit/banana.md", mode
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    hybrid = retriever.search("which fruit is yellow and long?", "hybrid", k=3)
    assert hybrid[0].score == pytest.approx(2 / 61)  # first in both rankings


def test_filters_restrict_every_retriever_before_the_top_k(retriever):
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.search("yellow fruit", mode, k=5, doc="tools/*")
        assert {h.chunk.doc_id for h in hits} <= {"tools/hammer.txt"}
        assert retriever.search("yellow fruit", mode, k=5, source="/no/such/*") == []
    src = retriever.store.all_chunks()[0].source
    assert {h.chunk.doc_id for h in retriever.search("fruit", "bm25", 5, source=src)} == {"fruit/apple.md",
                                                                                         "fruit/banana.md"}  # fmt: skip


def test_bm25_without_a_known_word_finds_nothing(retriever):
    assert retriever.search("zzzqqq", "bm25", 3) == []


def test_bad_queries_are_refused(retriever):
    with pytest.raises(ConfigError, match="unknown retrieval mode"):
        retriever.search("fruit", "sparse")
    with pytest.raises(ConfigError, match="empty"):
        retriever.search("   ", "bm25")
    with pytest.raises(ConfigError, match="k must be"):
        retriever.search("fruit", "bm25", k=0)


def test_a_question_over_the_encoder_limit_is_refused(tmp_path):
    encoder = tiny_encoder()
    write(tmp_path / "kb" / "a.txt", "Alpha.\n")
    with Store.open(tmp_path / "idx", create=True) as store:
        ingest(store, encoder, [tmp_path / "kb"], model_arg="tiny", progress=False, embed=CountingEmbed())
        r = Retriever(store, encoder, model_info(encoder, "tiny"))
        assert r.embed_query("alpha").shape == (1, 32)
        assert np.isclose(np.linalg.norm(r.embed_query("alpha")), 1.0)
        with pytest.raises(TokenizerError, match="more than the embedding model's 256"):
            r.embed_query("word " * 300)


def test_a_query_model_other_than_the_index_model_is_refused(tmp_path):
    encoder = tiny_encoder()
    write(tmp_path / "kb" / "a.txt", "Alpha.\n")
    with Store.open(tmp_path / "idx", create=True) as store:
        ingest(store, encoder, [tmp_path / "kb"], model_arg="tiny", progress=False, embed=CountingEmbed())
        other = tiny_encoder("other-model")
        with pytest.raises(ConfigError, match="built with embeddings of tiny .*query model is other-model"):
            Retriever(store, other, model_info(other, "other-model"))
