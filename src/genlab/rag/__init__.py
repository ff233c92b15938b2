"""Tier 5: retrieval-augmented generation: ingest documents, retrieve passages, answer with citations.

The rooms: ``types`` (the chunk and hit records every other module passes around),
``chunk`` (token-window chunking that respects headings and paragraphs), ``ingest`` (readers
for each source kind), ``store`` (SQLite for documents and chunks, FAISS for the dense side,
bm25s for the lexical side), ``retrieve`` (dense, BM25 and hybrid by reciprocal rank fusion),
``answer`` (the prompt with numbered, quoted passages; extractive and generative readers;
abstention). FAISS and bm25s are the ``rag`` extra and are imported only where they are used.
"""
