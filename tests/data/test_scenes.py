"""Fashion-MNIST scenes: layout, captions, questions and determinism (generated from real items)."""

from __future__ import annotations

import numpy as np
import pytest

from genlab.core.errors import DataError
from genlab.data import scenes, sources
from genlab.data.scenes import ITEM_NAMES, POSITIONS, caption_of, make_scenes, questions_of


def test_captions_of_hand_made_layouts() -> None:
    assert caption_of(((7, 0), (8, 1))) == "a sneaker to the left of a bag"
    assert caption_of(((4, 1), (3, 3))) == "a coat above a dress"
    assert caption_of(((6, 1), (5, 2))) == "a shirt above and to the right of a sandal"
    assert caption_of(((9, 0), (1, 3))) == "an ankle boot above and to the left of a pair of trousers"
    three = "a bag at the top left, a coat at the top right and a dress at the bottom right"
    assert caption_of(((8, 0), (4, 1), (3, 3))) == three


def test_questions_agree_with_the_layout() -> None:
    items = ((7, 0), (7, 1), (8, 3))  # two sneakers on top, a bag at the bottom right
    for seed in range(20):
        qs = questions_of(items, np.random.default_rng(seed))
        types = [t for _, _, t in qs]
        assert set(types) <= set(scenes.QUESTION_TYPES) and types.count("count") == 2
        for question, answer, kind in qs:
            if question.startswith("what is at the "):
                pos = POSITIONS.index(question[len("what is at the ") : -1])
                assert answer == {0: "sneaker", 1: "sneaker", 3: "bag"}.get(pos, "nothing")
            elif kind == "where":
                assert (question, answer) == ("where is the bag?", "bottom right")  # sneakers appear twice
            elif question == "how many items are there?":
                assert answer == "3"
            elif question == "how many shoes are there?":
                assert answer == "2"
            else:
                assert kind == "yes/no"
                named = question[len("is there a ") : -1].removeprefix("n ").removeprefix("pair of ")
                assert answer == ("yes" if named in ("sneaker", "bag") else "no")


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(DataError, match="unknown scene split 'validation'"):
        make_scenes("validation", 3)
    with pytest.raises(DataError, match="at least 1"):
        make_scenes("train", 0)


@pytest.mark.skipif(
    not (sources.FASHION_MNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian dataset-fashion-mnist not installed",
)
def test_real_scenes_place_real_items_deterministically() -> None:
    test_images, test_labels = scenes._pool("test")
    made = make_scenes("test", 40, seed=3)
    assert [s.caption for s in make_scenes("test", 10, seed=3)] == [s.caption for s in made[:10]]
    assert [s.caption for s in make_scenes("test", 10, seed=4)] != [s.caption for s in made[:10]]
    for s in made:
        assert s.image.shape == (64, 64) and s.image.dtype == np.uint8
        assert 2 <= len(s.items) <= 4 and [p for _, p in s.items] == sorted(p for _, p in s.items)
        occupied = {p for _, p in s.items}
        for pos in range(4):
            cell = s.image[(pos // 2) * 32 : (pos // 2) * 32 + 32, (pos % 2) * 32 : (pos % 2) * 32 + 32]
            assert (cell.any()) == (pos in occupied)
        for label, pos in s.items:
            # The cell holds one real test image of that label at some offset 0..4.
            cell = s.image[(pos // 2) * 32 : (pos // 2) * 32 + 32, (pos % 2) * 32 : (pos % 2) * 32 + 32]
            candidates = test_images[test_labels == label].astype(np.int64)
            found = False
            for dy in range(5):
                for dx in range(5):
                    rest = cell.copy()
                    rest[dy : dy + 28, dx : dx + 28] = 0
                    crop = cell[dy : dy + 28, dx : dx + 28].astype(np.int64)
                    found |= not rest.any() and bool((np.abs(candidates - crop).sum((1, 2)) == 0).any())
            assert found
        assert ITEM_NAMES[s.items[0][0]] in s.caption
