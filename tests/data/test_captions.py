"""Tux Paint's captioned drawings: caption files, rendering, the split by stamp group, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genlab.core.errors import DataError
from genlab.data import captions
from genlab.data.captions import load_tuxpaint, parse_caption_file, split_of


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "data"))
    return tmp_path


def stamp(folder: Path, name: str, english: str, french: str | None, colour=(255, 0, 0)) -> None:
    """A 40 x 20 RGBA drawing: an opaque 20 x 10 box of ``colour`` in a transparent margin."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((20, 40, 4), dtype=np.uint8)
    pixels[5:15, 10:30] = (*colour, 255)
    Image.fromarray(pixels, "RGBA").save(path.with_suffix(".png"))
    lines = [english, "de.utf8=Etwas."] + ([f"fr.utf8={french}"] if french else [])
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_caption_file_gives_english_first_line_and_french() -> None:
    text = "A frog.\nde.utf8=Ein Frosch.\nfr.utf8=Une grenouille.\n"
    assert parse_caption_file(text) == ("A frog.", "Une grenouille.")
    assert parse_caption_file("A calculator.  6x7=42\nfr.utf8=\n") == ("A calculator.  6x7=42", None)


def test_variants_of_a_stamp_share_a_split() -> None:
    for base in ("animals/amphibians/frog", "people/fireman", "town/houses/cartoon/tavern"):
        assert split_of(base) == split_of(base + "-1") == split_of(base + "_2") == split_of(base + "240a")
    names = [f"x/stamp{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(26)]
    assert {split_of(name) for name in names} == {"train", "val", "test"}


def test_drawings_are_rendered_on_white_cropped_and_square(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamps = isolated / "stamps"
    stamp(stamps, "animals/frog", "A frog.", "Une grenouille.", colour=(0, 128, 0))
    stamp(stamps, "food/apple-1", "An apple.", None)
    (stamps / "food/pear.txt").write_text("A pear (SVG only).\n", encoding="utf-8")  # no PNG: skipped
    monkeypatch.setenv("GENLAB_TUXPAINT", str(stamps))
    every = load_tuxpaint("all", size=16)
    assert [(d.name, d.caption, d.caption_fr, d.category) for d in every] == [
        ("animals/frog", "A frog.", "Une grenouille.", "animals"),
        ("food/apple-1", "An apple.", None, "food"),
    ]
    frog = every[0].image
    assert frog.shape == (16, 16, 3) and frog.dtype == np.uint8
    # The 20 x 10 box fills the width after cropping; above and below it is white padding.
    assert (frog[8, :, 1] > 100).all() and (frog[8, :, 0] < 40).all()
    assert (frog[0] == 255).all() and (frog[-1] == 255).all()
    by_split = [d.name for s in ("train", "val", "test") for d in load_tuxpaint(s, size=16)]
    assert sorted(by_split) == sorted(d.name for d in every)
    assert (isolated / "data" / "tuxpaint" / "tuxpaint-16.npz").is_file()


def test_missing_package_and_bad_arguments_are_one_line_errors(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENLAB_TUXPAINT", str(isolated / "none"))
    with pytest.raises(DataError, match="apt-get install tuxpaint-stamps-default"):
        load_tuxpaint("train")
    with pytest.raises(DataError, match="unknown Tux Paint split 'validation'"):
        load_tuxpaint("validation")
    with pytest.raises(DataError, match="between 8 and 512"):
        load_tuxpaint("train", size=4)


@pytest.mark.skipif(captions.tuxpaint_system() is None, reason="Debian tuxpaint-stamps-default not installed")
def test_real_tuxpaint_splits() -> None:
    splits = {s: load_tuxpaint(s, size=32) for s in ("train", "val", "test")}
    sizes = {s: len(v) for s, v in splits.items()}
    assert sum(sizes.values()) > 700 and sizes["train"] > 5 * sizes["test"] > 0 and sizes["val"] > 0
    names = [d.name for v in splits.values() for d in v]
    assert len(names) == len(set(names))
    frog = next(d for d in splits["test"] + splits["train"] + splits["val"] if d.name == "animals/amphibians/frog")
    assert frog.caption == "A frog." and frog.caption_fr == "Une grenouille."
    assert frog.image.shape == (32, 32, 3)
