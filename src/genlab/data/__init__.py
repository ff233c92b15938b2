"""Data: named offline sources, token streams and image sets.

- :mod:`genlab.data.sources`: resolve a named corpus or image set (or a user's path) to a
  local file, prepare it, read it as validated UTF-8.
- :mod:`genlab.data.text`: encode a corpus once into a memory-mapped token array and draw
  random ``(x, y)`` windows from it, resumably and DDP-aware.
- :mod:`genlab.data.images`: IDX parsing and Fashion-MNIST.

Tier 1: imports only ``genlab.core``, torch, numpy and the standard library.
"""

from genlab.data.images import FASHION_CLASSES, load_fashion_mnist, read_idx
from genlab.data.sources import SOURCES, Source, load_fortunes, prepare, read_text, resolve, status
from genlab.data.text import (
    RandomWindows,
    encode_to_memmap,
    fixed_batches,
    split,
    token_stream,
)

__all__ = [
    "FASHION_CLASSES",
    "SOURCES",
    "RandomWindows",
    "Source",
    "encode_to_memmap",
    "fixed_batches",
    "load_fashion_mnist",
    "load_fortunes",
    "prepare",
    "read_idx",
    "read_text",
    "resolve",
    "split",
    "status",
    "token_stream",
]
