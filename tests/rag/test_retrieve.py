"""Retrieval: reciprocal rank fusion on hand-made rankings; dense, BM25 and hybrid search with filters."""

from __future__ import annotations

import numpy as np
import pytest
from test_ingest import CountingEmbed, tiny_encoder, write

from genlab.core.errors import ConfigError, TokenizerError
from genlab.rag.ingest import ingest, model_info
from genlab.rag.retrieve import FUSIONS, Retriever, convex_fusion, reciprocal_rank_fusion
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


def test_weighted_rrf_by_hand():
    # dense [1, 2, 3], bm25 [3, 1] with w = 0.5, k = 10
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=10, weights=[1.0, 0.5]))
    assert fused[1] == pytest.approx(1 / 11 + 0.5 / 12)
    assert fused[2] == pytest.approx(1 / 12)
    assert fused[3] == pytest.approx(1 / 13 + 0.5 / 11)
    # a light lexical weight cannot lift bm25's first (3) over dense's second (2) ...
    assert [d for d, _ in reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=10, weights=[1.0, 0.05])] == [1, 2, 3]
    # ... an equal one can
    assert [d for d, _ in reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=10)] == [1, 3, 2]


def test_convex_minmax_fusion_by_hand():
    dense = ([1, 2, 3], [0.9, 0.5, 0.1])  # minmax: 1, 0.5, 0
    lexical = ([3, 4], [12.0, 2.0])  # minmax: 1, 0; ids 1, 2 missing -> 0 (the lowest)
    fused = dict(convex_fusion([dense, lexical], [1.0, 0.5], "minmax"))
    assert fused[1] == pytest.approx(1.0 / 1.5)
    assert fused[2] == pytest.approx(0.5 / 1.5)
    assert fused[3] == pytest.approx((0.0 + 0.5 * 1.0) / 1.5)
    assert fused[4] == pytest.approx(0.0)  # missing from dense (0), last in bm25 (0)
    order = [d for d, _ in convex_fusion([dense, lexical], [1.0, 0.5], "minmax")]
    assert order == [1, 2, 3, 4]
    # a heavier BM25 side lifts 3 (first lexically) over 2
    assert [d for d, _ in convex_fusion([dense, lexical], [1.0, 2.0], "minmax")][:2] == [3, 1]
    # weight 0 keeps the dense order; every score equal normalises to 1
    assert [d for d, _ in convex_fusion([dense, lexical], [1.0, 0.0])][:3] == [1, 2, 3]
    assert convex_fusion([([7, 8], [2.0, 2.0])]) == [(7, 1.0), (8, 1.0)]


def test_convex_zscore_fusion_by_hand_keeps_score_gaps_that_rrf_drops():
    # dense is sure of 1 (far ahead); bm25 puts 2 first by a hair. RRF sees two firsts and a tie
    # broken by order; the z-scored sum keeps dense's margin.
    dense = ([1, 2, 3], [0.95, 0.40, 0.38])
    lexical = ([2, 1, 3], [5.01, 5.00, 1.0])

    def z(scores):  # statistics over the kept scores and the floor (here the lowest kept score)
        s = np.append(scores, min(scores))
        return ((s - s.mean()) / s.std())[:-1]

    zd, zb = z(dense[1]), z(lexical[1])
    fused = dict(convex_fusion([dense, lexical], [1.0, 1.0], "zscore"))
    assert fused[1] == pytest.approx((zd[0] + zb[1]) / 2)
    assert fused[2] == pytest.approx((zd[1] + zb[0]) / 2)
    assert fused[3] == pytest.approx((zd[2] + zb[2]) / 2)
    assert max(fused, key=fused.get) == 1
    rrf = dict(reciprocal_rank_fusion([dense[0], lexical[0]], k=60))
    assert rrf[1] == pytest.approx(rrf[2])  # 1/61 + 1/62 each: the margin is gone
    # an empty ranking drops out (its weight too); a missing id takes the ranking's lowest z
    assert convex_fusion([dense, ([], [])], [1.0, 3.0], "zscore") == convex_fusion([dense], [1.0], "zscore")
    part = dict(convex_fusion([dense, ([2], [4.0])], [1.0, 1.0], "zscore"))  # one score: z = 0 for all
    assert part[1] == pytest.approx(zd[0] / 2)
    assert convex_fusion([]) == []


def test_a_floor_tells_a_single_lexical_hit_from_the_rest():
    dense = ([1, 2, 3, 4], [0.9, 0.8, 0.7, 0.1])  # minmax: 1, 0.875, 0.75, 0
    one = ([3], [2.0])  # BM25 found one chunk; every other chunk scores 0
    # no floor: the lone hit is its own minimum, so BM25 cannot lift it
    assert [d for d, _ in convex_fusion([dense, one], [1.0, 1.0], "minmax")][0] == 1
    for norm in ("minmax", "zscore"):
        fused = convex_fusion([dense, one], [1.0, 1.0], norm, [None, 0.0])
        assert fused[0][0] == 3, norm
    fused = dict(convex_fusion([dense, one], [1.0, 1.0], "minmax", [None, 0.0]))
    assert fused[3] == pytest.approx((0.75 + 1.0) / 2) and fused[1] == pytest.approx((1.0 + 0.0) / 2)


def test_fusion_input_errors():
    with pytest.raises(ValueError, match="normalisation"):
        convex_fusion([([1], [1.0])], norm="softmax")
    with pytest.raises(ValueError, match="2 weights and 1 floors for 1 rankings"):
        convex_fusion([([1], [1.0])], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        convex_fusion([([1], [1.0])], [-1.0])
    with pytest.raises(ValueError, match="2 ids and 1 scores"):
        convex_fusion([([1, 2], [1.0])])
    assert set(FUSIONS) == {"rrf", "minmax", "zscore"}


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
    hybrid = retriever.search("which fruit is yellow and long?", "hybrid", k=3, fusion="rrf", bm25_weight=1.0)
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


def test_hybrid_with_bm25_weight_zero_keeps_the_dense_order(retriever):
    q = "the red fruit on trees"
    dense = [h.chunk.chunk_id for h in retriever.search(q, "dense", k=3)]
    assert [h.chunk.chunk_id for h in retriever.search(q, "hybrid", k=3, bm25_weight=0.0)] == dense
    with pytest.raises(ConfigError, match="BM25 weight"):
        retriever.search(q, "hybrid", bm25_weight=-1.0)
    for fusion in FUSIONS:
        hits = retriever.search(q, "hybrid", k=3, bm25_weight=0.0, fusion=fusion)
        assert [h.chunk.chunk_id for h in hits] == dense, fusion
    with pytest.raises(ConfigError, match="unknown fusion 'max'"):
        retriever.search(q, "hybrid", fusion="max")
    with pytest.raises(ConfigError, match="RRF k"):
        retriever.search(q, "hybrid", rrf_k=-1)
