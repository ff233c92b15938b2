"""Visual question answering data: easy-VQA, questions over the Fashion-MNIST scenes, and the
word-level question / answer vocabulary a VQA run keeps.

easy-VQA (Victor Zhou 2019, PyPI ``easy-vqa`` 1.0, MIT licence) is **generated** data: 64 x 64 RGB
images, each of one procedurally drawn shape (circle, rectangle, triangle) in one of eight colours,
and templated questions about it: 4,000 train images with 38,575 questions, 1,000 test images with
9,673 questions, 13 answers. The wheel (``pip download easy-vqa==1.0 --no-deps``, 3.2 MB, never
installed) is unpacked into ``data_dir()/easy-vqa`` (:func:`unpack_easy_vqa`; ``genlab data prepare
easy-vqa``), which then holds::

    answers.txt                       one answer per line
    train/questions.json              [[question, answer, image id], ...]
    train/images/<id>.png             64 x 64 RGB
    test/...                          the same

genlab parses it itself (json, PIL for the PNG files): :func:`read_easy_vqa`. Its train / test split
is kept; the validation split is carved out of train by image (:func:`split_by_image`, seeded), so
no image has questions on both sides. easy-VQA has no question types; :func:`easy_vqa_type` reads
them off the templates: ``yes/no`` ("is there a red shape?", "does the image not contain a
circle?"), ``color`` ("what color is the circle?") and ``shape`` ("what shape is in the image?").

The Fashion-MNIST scenes (``genlab.data.scenes``, **generated**: real Fashion-MNIST items placed on
a 64 x 64 canvas) carry their own questions and types (what / where / count / yes/no);
:func:`scene_vqa` lays them out the same way.

Every split is a :class:`VQASplit`: the images once (N, H, W, C) uint8, and per question its text,
answer, type and the index of its image.

Tier 1: imports ``genlab.core`` (and ``genlab.data.sources`` for where easy-VQA lives).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genlab.core.errors import DataError, TokenizerError

EASY_VQA_REQUIREMENT = "easy-vqa==1.0"
EASY_VQA_WHEEL = "easy_vqa-1.0-py3-none-any.whl"
EASY_VQA_WHEEL_SHA256 = "fcb51b309b78c7b00f97b64cdbcbcf5c105f94da1b39c0796cee5a787c4f650f"
_WHEEL_DATA = "easy_vqa/data/"

KIND_EASY_VQA = "generated (procedural shapes, templated questions: easy-VQA)"
KIND_SCENES = "generated (real Fashion-MNIST items placed on a canvas, templated questions)"

EASY_VQA_TYPES = ("yes/no", "color", "shape")
SPLITS = ("train", "val", "test")


@dataclass
class VQASplit:
    """One split: ``images`` (N, H, W, C) uint8 and, per question q, ``questions[q]``, ``answers[q]``,
    ``types[q]`` and ``image_index[q]`` (its row of ``images``)."""

    images: np.ndarray
    questions: list[str]
    answers: list[str]
    types: list[str]
    image_index: np.ndarray  # (Q,) int64
    name: str = ""  # e.g. "easy-vqa/val"
    kind: str = ""  # data kind, for every figure that reports it

    def __post_init__(self):
        n = len(self.questions)
        where = self.name or "a VQA split"
        if not (len(self.answers) == len(self.types) == len(self.image_index) == n):
            raise DataError(f"{where}: questions, answers, types and image indices differ in length")
        if self.images.ndim != 4:
            raise DataError(f"{where}: images must be (N, H, W, C), got shape {self.images.shape}")
        if n and (int(self.image_index.min()) < 0 or int(self.image_index.max()) >= len(self.images)):
            raise DataError(f"{where}: a question points at an image that is not there")

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def type_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.types).items()))


# --- easy-VQA --------------------------------------------------------------------------------


def easy_vqa_type(question: str) -> str:
    """The template family of an easy-VQA question: ``yes/no``, ``color`` or ``shape``."""
    words = question.lower().split()
    if words and words[0] in ("is", "does", "are", "do"):
        return "yes/no"
    return "color" if "color" in words or "colour" in words else "shape"


def unpack_easy_vqa(wheel: Path, target: Path) -> Path:
    """Unzip the ``easy_vqa/data/`` files of the easy-vqa wheel into ``target`` (never installed);
    written beside it and moved into place, so an interrupted unpack leaves nothing half-done."""
    part = target.with_name(f"{target.name}.part{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    try:
        with zipfile.ZipFile(wheel) as z:
            names = [n for n in z.namelist() if n.startswith(_WHEEL_DATA) and not n.endswith("/")]
            if f"{_WHEEL_DATA}train/questions.json" not in names:
                raise DataError(f"{wheel} has no {_WHEEL_DATA}train/questions.json: use {EASY_VQA_REQUIREMENT}")
            for name in names:
                rel = name[len(_WHEEL_DATA) :]
                if ".." in Path(rel).parts or rel.endswith(".DS_Store"):
                    continue
                dest = part / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(name))
    except (zipfile.BadZipFile, OSError) as e:
        shutil.rmtree(part, ignore_errors=True)
        raise DataError(f"{wheel} is not a readable wheel ({e}): delete it and prepare easy-vqa again") from e
    shutil.rmtree(target, ignore_errors=True)
    os.replace(part, target)
    return target


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{path} is not a readable PNG ({e}): prepare easy-vqa again") from e


def read_easy_vqa(root: str | os.PathLike, split: str) -> VQASplit:
    """Parse one of easy-VQA's own splits (``train`` or ``test``) from an unpacked folder ``root``:
    ``questions.json`` and the PNG of every image a question names (image ids renumbered 0..N-1 in
    increasing id order)."""
    if split not in ("train", "test"):
        raise DataError(f"easy-VQA has the splits train and test (validation is carved from train), not '{split}'")
    return _read_easy_vqa(str(Path(root).resolve()), split)


@functools.lru_cache(maxsize=4)
def _read_easy_vqa(root: str, split: str) -> VQASplit:
    folder = Path(root) / split
    path = folder / "questions.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(f"{path} is missing: run genlab data prepare easy-vqa") from e
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not readable JSON ({e}): run genlab data prepare easy-vqa again") from e
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path} holds no questions: expected a list of [question, answer, image id]")
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and isinstance(row[1], str)
                and isinstance(row[2], int)):  # fmt: skip
            raise DataError(f"{path}: entry {i} is {row!r}, not [question, answer, image id]")
    ids = sorted({row[2] for row in rows})
    row_of = {image_id: k for k, image_id in enumerate(ids)}
    images = [_read_png(folder / "images" / f"{image_id}.png") for image_id in ids]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"{folder}/images holds images of several sizes {sorted(shapes)}: prepare easy-vqa again")
    questions = [row[0] for row in rows]
    return VQASplit(
        images=np.stack(images),
        questions=questions,
        answers=[row[1] for row in rows],
        types=[easy_vqa_type(q) for q in questions],
        image_index=np.array([row_of[row[2]] for row in rows], dtype=np.int64),
        name=f"easy-vqa/{split}",
        kind=KIND_EASY_VQA,
    )


def subset(split: VQASplit, image_rows: np.ndarray, name: str) -> VQASplit:
    """The questions of the images ``image_rows`` (in that order), images renumbered 0..len-1."""
    image_rows = np.asarray(image_rows, dtype=np.int64)
    new = np.full(len(split.images), -1, dtype=np.int64)
    new[image_rows] = np.arange(len(image_rows))
    keep = np.flatnonzero(new[split.image_index] >= 0)
    return VQASplit(
        images=split.images[image_rows],
        questions=[split.questions[q] for q in keep],
        answers=[split.answers[q] for q in keep],
        types=[split.types[q] for q in keep],
        image_index=new[split.image_index[keep]],
        name=name,
        kind=split.kind,
    )


def split_by_image(split: VQASplit, fraction: float, seed: int = 0, name: str = "") -> tuple[VQASplit, VQASplit]:
    """(train, val): a seeded ``fraction`` of the images, with all their questions, held out."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"the validation fraction must be between 0 and 1, got {fraction}")
    n = len(split.images)
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise DataError(f"{n} images cannot give a validation split of {fraction} and keep training images")
    perm = np.random.default_rng(seed).permutation(n)
    base = name or split.name.split("/")[0]
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return subset(split, train, f"{base}/train"), subset(split, val, f"{base}/val")


def load_easy_vqa(
    split: str, val_fraction: float = 0.1, seed: int = 0, root: str | os.PathLike | None = None
) -> VQASplit:
    """easy-VQA's ``train`` (minus the validation images), ``val`` (a seeded ``val_fraction`` of the
    train images) or ``test``; ``root`` defaults to the ``easy-vqa`` source."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': choose from {list(SPLITS)}")
    if root is None:
        from genlab.data.sources import SOURCES

        root = SOURCES["easy-vqa"].resolve()
    if split == "test":
        return read_easy_vqa(root, "test")
    train, val = split_by_image(read_easy_vqa(root, "train"), val_fraction, seed, "easy-vqa")
    return train if split == "train" else val


# --- Fashion-MNIST scene questions -----------------------------------------------------------


def scene_vqa(scenes: Sequence, name: str = "scenes") -> VQASplit:
    """A :class:`VQASplit` from ``genlab.data.scenes`` Scenes: each scene's ``image`` (64, 64)
    grayscale becomes (64, 64, 1), and its ``questions`` (question, answer, type) are kept."""
    if not scenes:
        raise DataError(f"{name}: no scenes to ask questions about")
    images, questions, answers, types, index = [], [], [], [], []
    for k, scene in enumerate(scenes):
        image = np.asarray(scene.image, dtype=np.uint8)
        images.append(image[..., None] if image.ndim == 2 else image)
        for q, a, t in scene.questions:
            questions.append(q)
            answers.append(a)
            types.append(t)
            index.append(k)
    return VQASplit(np.stack(images), questions, answers, types, np.array(index, dtype=np.int64), name, KIND_SCENES)


# --- the question / answer vocabulary ---------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+(?:[-'/][a-z0-9]+)*")
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIALS = (PAD, UNK, CLS, SEP, MASK)
VOCAB_FILE = "vqa_vocab.json"


def words(text: str) -> list[str]:
    """Lower-cased words (hyphenated words such as 't-shirt' stay whole); punctuation dropped."""
    return _WORD.findall(text.lower())


def _lead(question: str) -> str:
    return " ".join(words(question)[:2])


@dataclass
class QuestionVocab:
    """Word-level question vocabulary (ids 0-4 the specials [PAD] [UNK] [CLS] [SEP] [MASK]), the
    answer vocabulary, and what a run answers from when the model cannot: the most frequent
    training answer of each question type (``priors``) and the type of a question's first two
    words (``leads``, the most frequent type of training questions that start that way)."""

    tokens: list[str]
    answers: list[str]
    priors: dict[str, str] = field(default_factory=dict)  # question type -> most frequent training answer
    leads: dict[str, str] = field(default_factory=dict)  # first two words -> question type
    type_counts: dict[str, int] = field(default_factory=dict)  # training questions per type

    def __post_init__(self):
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise TokenizerError(f"a VQA vocabulary starts with {list(SPECIALS)}, got {self.tokens[:5]}")
        self._ids = {w: i for i, w in enumerate(self.tokens)}
        self._answer_ids = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def build(cls, questions: Iterable[str], answers: Sequence[str], types: Sequence[str],
              extra_text: Iterable[str] = ()) -> QuestionVocab:  # fmt: skip
        """From training questions (and ``extra_text``, e.g. captions for pretraining), their answers and types."""
        questions = list(questions)
        seen = Counter(w for text in [*questions, *extra_text] for w in words(text))
        tokens = list(SPECIALS) + sorted(seen)
        by_type: dict[str, Counter] = {}
        for a, t in zip(answers, types):
            by_type.setdefault(t, Counter())[a] += 1
        priors = {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in sorted(by_type.items())}
        lead_types: dict[str, Counter] = {}
        for q, t in zip(questions, types):
            lead_types.setdefault(_lead(q), Counter())[t] += 1
        leads = {lead: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for lead, c in sorted(lead_types.items())}
        counts = {t: sum(c.values()) for t, c in sorted(by_type.items())}
        return cls(tokens, sorted(set(answers)), priors, leads, counts)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return 0

    def id(self, token: str) -> int:
        return self._ids.get(token, self._ids[UNK])

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in words(text) if w not in self._ids]

    def encode(self, text: str, max_len: int = 0) -> list[int]:
        """[CLS] words [SEP] (unknown words -> [UNK]); ``max_len`` > 0 truncates the words to fit."""
        ids = [self.id(w) for w in words(text)]
        if max_len:
            ids = ids[: max(max_len - 2, 0)]
        return [self._ids[CLS], *ids, self._ids[SEP]]

    def answer_id(self, answer: str) -> int | None:
        return self._answer_ids.get(answer)

    def question_type(self, question: str) -> str | None:
        """The type training questions that start like this one had; None for a new kind of question."""
        return self.leads.get(_lead(question))

    def prior(self, qtype: str | None) -> str:
        """The most frequent training answer of ``qtype`` (of the most common type when it is unknown)."""
        if qtype in self.priors:
            return self.priors[qtype]
        common = max(self.type_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return self.priors[common]

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "answers": self.answers, "priors": self.priors, "leads": self.leads,
                "type_counts": self.type_counts}  # fmt: skip

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / VOCAB_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> QuestionVocab:
        path = Path(directory) / VOCAB_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise TokenizerError(f"{directory} has no {VOCAB_FILE}: not a VQA run (or an incomplete one)") from e
        except (OSError, json.JSONDecodeError) as e:
            raise TokenizerError(f"{path} is not readable JSON ({e}): the run is damaged") from e
        return cls(**data)


def encode_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1] (what the models read)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def read_image(path: str | os.PathLike, channels: int, size: int) -> np.ndarray:
    """An image file for a VQA run -> (size, size, channels) uint8. RGBA loses its alpha and a
    grayscale file is read as RGB for an RGB run; an RGB file for a grayscale run, or another size,
    is a one-line DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
            if channels == 1 and not gray:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
                if not (arr[..., 0] == arr[..., 1]).all() or not (arr[..., 1] == arr[..., 2]).all():
                    raise DataError(f"{path} is a colour image (3 channels) but the run reads grayscale images "
                                    "(1 channel): give a grayscale image")  # fmt: skip
                arr = arr[..., :1]
            else:
                arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read {path} as an image ({e}): give a PNG or JPEG file") from e
    arr = arr[..., None] if arr.ndim == 2 else arr
    if arr.shape[:2] != (size, size):
        raise DataError(f"{path} is {arr.shape[1]}x{arr.shape[0]} but the run reads {size}x{size} images: resize it")
    return arr
