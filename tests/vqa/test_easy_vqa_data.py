"""easy-VQA parsing (a small wheel made here, and the real data when it is prepared), the
validation split by image, scene questions, the word vocabulary and its answer priors."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from genlab.core.errors import DataError, TokenizerError
from genlab.data import sources
from genlab.data.easy_vqa import (
    EASY_VQA_TYPES,
    QuestionVocab,
    VQASplit,
    easy_vqa_type,
    read_easy_vqa,
    read_image,
    scene_vqa,
    split_by_image,
    unpack_easy_vqa,
    words,
)
from vqa.helpers import make_easy_vqa, make_wheel

# The real data, prepared by `genlab data prepare easy-vqa` (read before the tests isolate GENLAB_HOME).
_HOME = Path(os.environ.get("GENLAB_HOME", Path.home() / ".genlab")).expanduser()
REAL = Path(os.environ.get("GENLAB_DATA", _HOME / "data")).expanduser() / "easy-vqa"


def test_unpack_keeps_only_the_data_and_reads_back(tmp_path):
    wheel = make_wheel(tmp_path / "easy_vqa-1.0-py3-none-any.whl", n_train=6, n_test=3)
    root = unpack_easy_vqa(wheel, tmp_path / "easy-vqa")
    assert sorted(p.name for p in root.iterdir()) == ["answers.txt", "test", "train"]  # no code, no .DS_Store
    train = read_easy_vqa(root, "train")
    assert len(train) == 18 and train.images.shape == (6, 16, 16, 3) and train.images.dtype == np.uint8
    assert train.kind.startswith("generated") and train.name == "easy-vqa/train"
    assert train.questions[0] == "what color is the shape?" and train.types[:3] == ["color", "shape", "yes/no"]
    first = np.asarray(Image.open(root / "train" / "images" / "0.png").convert("RGB"))
    assert np.array_equal(train.images[train.image_index[0]], first)


def test_bad_files_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="not a readable wheel"):
        unpack_easy_vqa(tmp_path / "missing.whl", tmp_path / "out")
    root = make_easy_vqa(tmp_path / "root", 3, 2)
    (root / "test" / "questions.json").write_text("[[1, 2]]")
    with pytest.raises(DataError, match="not \\[question, answer, image id\\]"):
        read_easy_vqa(root, "test")
    with pytest.raises(DataError, match="carved from train"):
        read_easy_vqa(root, "val")
    with pytest.raises(DataError, match="genlab data prepare easy-vqa"):
        read_easy_vqa(tmp_path / "nowhere", "train")


def test_validation_is_carved_by_image_and_seeded():
    n = 30  # image k is filled with the value k; its questions name k
    images = np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3)
    index = np.repeat(np.arange(n), 3)
    data = VQASplit(images, [f"is there a {k} shape?" for k in index], ["yes"] * len(index), ["yes/no"] * len(index),
                    index, "easy-vqa/train", "generated")  # fmt: skip
    train, val = split_by_image(data, 0.2, seed=3)
    assert len(val.images) == 6 and len(train.images) == 24 and (len(train), len(val)) == (72, 18)
    assert val.name == "easy-vqa/val" and train.name == "easy-vqa/train"
    val_ids, train_ids = set(val.images[:, 0, 0, 0].tolist()), set(train.images[:, 0, 0, 0].tolist())
    assert not val_ids & train_ids and len(val_ids | train_ids) == n  # disjoint, every image on one side
    for split in (train, val):  # each question still points at its own image
        assert all(
            q == f"is there a {split.images[i, 0, 0, 0]} shape?" for q, i in zip(split.questions, split.image_index)
        )
    assert split_by_image(data, 0.2, seed=3)[1].questions == val.questions  # seeded
    assert split_by_image(data, 0.2, seed=4)[1].questions != val.questions
    with pytest.raises(DataError, match="between 0 and 1"):
        split_by_image(data, 1.0)


def test_question_types_from_the_templates():
    assert easy_vqa_type("is there a red shape?") == "yes/no"
    assert easy_vqa_type("does the image not contain a circle?") == "yes/no"
    assert easy_vqa_type("what is the color of the triangle?") == "color"
    assert easy_vqa_type("what is the blue shape?") == "shape"
    assert easy_vqa_type("what shape is in the image?") == "shape"


@pytest.mark.skipif(not (REAL / "train" / "questions.json").is_file(), reason="run: genlab data prepare easy-vqa")
def test_the_real_easy_vqa():
    train, test = read_easy_vqa(REAL, "train"), read_easy_vqa(REAL, "test")
    assert (len(train), len(train.images), len(test), len(test.images)) == (38575, 4000, 9673, 1000)
    assert train.images.shape[1:] == (64, 64, 3)
    answers = (REAL / "answers.txt").read_text().split()
    assert sorted(set(train.answers)) == sorted(answers) and len(answers) == 13
    by_type = {t: {a for a, u in zip(train.answers, train.types) if u == t} for t in EASY_VQA_TYPES}
    assert by_type["yes/no"] == {"yes", "no"} and by_type["shape"] == {"circle", "rectangle", "triangle"}
    assert len(by_type["color"]) == 8  # the type read off the template always fits the answer


def test_scene_questions_keep_their_types():
    scenes = [SimpleNamespace(image=np.full((64, 64), k, np.uint8), caption=f"scene {k}",
                              questions=(("what is at the top left?", "bag", "what"), ("how many items are there?",
                                          str(k + 2), "count"))) for k in range(3)]  # fmt: skip
    s = scene_vqa(scenes, "scenes/train")
    assert s.images.shape == (3, 64, 64, 1) and len(s) == 6 and s.channels == 1
    assert s.types == ["what", "count"] * 3 and list(s.image_index) == [0, 0, 1, 1, 2, 2]
    assert s.kind.startswith("generated") and "Fashion-MNIST" in s.kind
    with pytest.raises(DataError, match="no scenes"):
        scene_vqa([], "scenes/val")


def test_vocabulary_priors_and_question_kinds(tmp_path):
    qs = ["what color is the shape?", "what color is the shape?", "is there a red shape?", "what is at the t-shirt?"]
    answers, types = ["red", "blue", "yes", "red"], ["color", "color", "yes/no", "what"]
    v = QuestionVocab.build(qs, answers, types)
    assert words("Is there a T-shirt?") == ["is", "there", "a", "t-shirt"]
    assert v.tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and "t-shirt" in v.tokens
    ids = v.encode("what color is the zebra?")
    assert ids[0] == v.id("[CLS]") and ids[-1] == v.id("[SEP]") and v.id("[UNK]") in ids
    assert v.unknown_words("what color is the zebra?") == ["zebra"]
    assert v.priors == {"color": "blue", "what": "red", "yes/no": "yes"}  # ties: the first in order
    assert v.question_type("What color is it?") == "color" and v.question_type("how many shapes?") is None
    assert v.prior(None) == "blue"  # unknown type: the most common type's prior
    assert v.answer_id("green") is None and v.answers == ["blue", "red", "yes"]
    v.save(tmp_path)
    assert QuestionVocab.load(tmp_path) == v
    with pytest.raises(TokenizerError, match="not a VQA run"):
        QuestionVocab.load(tmp_path / "none")


def test_read_image_checks_channels_and_size(tmp_path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(rgb)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(gray)
    assert read_image(rgb, 3, 16).shape == (16, 16, 3) and read_image(gray, 1, 16).shape == (16, 16, 1)
    assert read_image(gray, 3, 16).shape == (16, 16, 3)  # grayscale read as RGB for an RGB run
    with pytest.raises(DataError, match="1 channel"):
        read_image(rgb, 1, 16)
    with pytest.raises(DataError, match="reads 32x32"):
        read_image(rgb, 3, 32)
    with pytest.raises(DataError, match="cannot read"):
        read_image(tmp_path / "nothing.png", 3, 16)


def test_the_source_is_registered_with_its_hint():
    src = sources.SOURCES["easy-vqa"]
    assert src.kind == "vqa" and "generated" in src.description and src.download is not None
    with pytest.raises(DataError, match="genlab data prepare easy-vqa"):
        src.resolve()  # the tests' own empty data folder
