"""The records that flow through RAG: a :class:`Chunk` of a document and a retrieval :class:`Hit`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """A passage of one document, as stored in the index.

    ``doc_id`` is the document's path relative to its source root (or a dictionary's headword key),
    ``source`` the name of the ingested source it came from, ``title`` the document's title,
    ``section`` the heading path above the passage ("FAQ > General Python FAQ > What is Python?"),
    ``position`` the chunk's index within its document, ``text`` the passage itself.
    """

    chunk_id: int
    doc_id: str
    source: str
    title: str
    section: str
    position: int
    text: str

    def citation(self) -> str:
        """How an answer names this chunk: document, then section when it has one."""
        return f"{self.doc_id} § {self.section}" if self.section else self.doc_id


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its ``score`` under the retriever that found it (higher is better) and 1-based ``rank``."""

    chunk: Chunk
    score: float
    rank: int
