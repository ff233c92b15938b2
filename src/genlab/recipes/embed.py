"""``genlab embed``: one text per line -> a float32 ``.npy`` of normalised sentence embeddings.

    genlab embed minilm --input texts.txt --output emb.npy

MODEL is ``minilm``, a genlab run directory of the ``bert`` family or a Hugging Face BERT folder
(:func:`genlab.runs.encoders.load_encoder`).

Each embedding is the mean of the encoder's last hidden states over the text's tokens,
L2-normalised (:meth:`genlab.models.bert.Bert.embed`), as sentence-transformers computes it for
MiniLM: the rows of the output are unit vectors and their dot products are cosine similarities.

The input is read as UTF-8 (a binary or non-UTF-8 file is refused, as for training data). Lines
are split at ``\\n`` (a ``\\r`` before it is dropped); a final newline does not start another line.
An empty or blank line is an error that names its line number: it has no sentence to embed, and
dropping it silently would shift every row after it against the input lines. A text longer than
``max_length`` tokens is truncated with a warning naming its line, or refused with
``truncate=False``. ``max_length`` defaults to the model's own limit (MiniLM: 256, the length
sentence-transformers uses; otherwise the position table) and may not exceed the position table.

For speed the texts are tokenized in one parallel call, sorted by token count so that each batch
holds texts of about the same length (little padding; a batch without padding runs without a
mask), encoded under ``torch.inference_mode``, and written back in input order.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genlab.core.errors import ConfigError, DataError, RunDirError
from genlab.data.sources import read_text
from genlab.eval.embeddings import embed_texts
from genlab.runs.encoders import load_encoder

_SHOW = 5  # line numbers an error or warning lists


@dataclass
class EmbedResult:
    output: Path
    shape: tuple[int, int]
    source: str
    seconds: float
    truncated: list[int] = field(default_factory=list)  # 1-based line numbers

    def summary(self) -> str:
        n, d = self.shape
        rate = n / self.seconds if self.seconds > 0 else float("inf")
        return f"wrote {self.output}: {n:,} x {d} float32 ({self.source}; {self.seconds:.1f} s, {rate:,.0f} texts/s)"


# --- texts -----------------------------------------------------------------------------


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:_SHOW])
    more = f" and {len(numbers) - _SHOW} more" if len(numbers) > _SHOW else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def read_lines(path: str | Path) -> list[str]:
    """The texts of ``path``, one per line (see the module docstring); DataError for blank lines."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is not a file: give a UTF-8 text file with one text per line")
    text = read_text(path.resolve())  # a resolved path is never taken for a source name
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    lines = [line.removesuffix("\r") for line in lines]
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise DataError(
            f"{path}: {_lines(blank)} {'is' if len(blank) == 1 else 'are'} empty; genlab embed reads one text "
            "per line and an empty text has no embedding: remove blank lines (grep -v '^[[:space:]]*$')"
        )
    return lines


# --- embedding -------------------------------------------------------------------------


def embed(
    model: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 32,
    max_length: int | None = None,
    truncate: bool = True,
    overwrite: bool = False,
    checkpoint: str = "best",
    progress: bool = True,
) -> EmbedResult:
    """Embed every line of ``input_path`` with ``model`` into ``output_path`` (float32 .npy, N x C).

    Refuses an existing output unless ``overwrite``; a truncated text is reported on stderr by
    line number. The file is written atomically (a temporary file renamed into place).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.exists():
        if output_path.is_dir():
            raise RunDirError(f"{output_path} is a directory: name the .npy file to write")
        if input_path.exists() and output_path.resolve() == input_path.resolve():
            raise RunDirError(f"{output_path} is the input file: choose another output name")
        if not overwrite:
            raise RunDirError(f"{output_path} exists: add --overwrite to replace it, or choose another name")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    texts = read_lines(input_path)
    encoder = load_encoder(model, checkpoint)
    start = time.perf_counter()
    name = f"{input_path}: line"
    vectors, cut = embed_texts(encoder, texts, batch_size, max_length, truncate, progress, name)
    seconds = time.perf_counter() - start
    lines = [i + 1 for i in cut]
    if lines:
        limit = encoder.max_length if max_length is None else max_length
        print(
            f"warning: {len(lines)} text{'s' if len(lines) > 1 else ''} longer than {limit} tokens "
            f"{'were' if len(lines) > 1 else 'was'} truncated ({_lines(lines)} of {input_path})",
            file=sys.stderr,
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, vectors)
        os.replace(tmp, output_path)
    finally:
        tmp.unlink(missing_ok=True)
    return EmbedResult(output_path, vectors.shape, encoder.source, seconds, lines)
