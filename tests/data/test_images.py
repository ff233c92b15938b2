"""IDX parsing (files written here) and Fashion-MNIST loading."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from genlab.core.errors import DataError
from genlab.data import images, sources
from genlab.data.images import FASHION_CLASSES, load_fashion_mnist, read_idx

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes for ``array``, written independently of the reader."""
    code = _CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("GENLAB_DATA", str(data))
    monkeypatch.setenv("GENLAB_OFFLINE", "1")
    return data


def test_read_idx_plain_and_gzip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases = [
        (rng.integers(0, 256, (3, 4, 5)).astype(np.uint8), False),
        (rng.integers(-(2**31), 2**31 - 1, (6, 2)).astype(np.int32), True),
        (rng.standard_normal(7).astype(np.float32), True),
        (rng.integers(-300, 300, (2, 3)).astype(np.int16), False),
    ]
    for i, (array, compress) in enumerate(cases):
        path = write_idx(tmp_path / f"a{i}.idx{'.gz' if compress else ''}", array, compress)
        got = read_idx(path)
        assert got.dtype == array.dtype and got.dtype.isnative
        np.testing.assert_array_equal(got, array)
        assert got.flags.writeable


def test_read_idx_rejects_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)
    (tmp_path / "unknown-type.idx").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "unknown-type.idx")


def test_read_idx_rejects_truncated_files(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))
    (tmp_path / "short.idx").write_bytes(data[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "header.idx").write_bytes(data[:9])
    with pytest.raises(DataError, match="truncated inside its header"):
        read_idx(tmp_path / "header.idx")
    (tmp_path / "long.idx").write_bytes(data + b"\x00")
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(tmp_path / "long.idx")
    compressed = gzip.compress(data)
    (tmp_path / "cut.idx.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "cut.idx.gz")


def test_load_fashion_mnist_from_the_data_folder(isolated: Path) -> None:
    folder = isolated / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in [("train", 6), ("t10k", 3)]:
        pictures = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = np.arange(n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", pictures, compress=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)  # uncompressed works too
    x, y = load_fashion_mnist("test")
    assert x.shape == (3, 28, 28) and x.dtype == np.uint8
    assert y.tolist() == [0, 1, 2]
    assert load_fashion_mnist("train")[0].shape == (6, 28, 28)
    with pytest.raises(DataError, match="'train' or 'test'"):
        load_fashion_mnist("validation")  # type: ignore[arg-type]


def test_missing_fashion_mnist_gives_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "none")
    with pytest.raises(DataError, match="sudo apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test")


@pytest.mark.skipif(
    not (sources.FASHION_MNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist_test_split() -> None:
    x, y = images.load_fashion_mnist("test")
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10_000,) and sorted(set(y.tolist())) == list(range(10))
    assert np.bincount(y).tolist() == [1000] * 10
    assert len(FASHION_CLASSES) == 10
    assert 0 < x.mean() < 255


def test_select_excludes_a_class_and_keeps_a_stratified_fraction():
    import numpy as np
    import pytest

    from genlab.core.errors import DataError
    from genlab.data.images import select

    labels = np.repeat(np.arange(10), 100).astype(np.uint8)
    images = np.arange(1000 * 4, dtype=np.uint8).reshape(1000, 2, 2)
    x, y = select(images, labels, exclude_class=4)
    assert len(y) == 900 and 4 not in y and np.array_equal(x, images[labels != 4])
    x, y = select(images, labels, fraction=0.05, seed=1)
    assert np.array_equal(np.bincount(y), [5] * 10)
    assert np.array_equal(select(images, labels, fraction=0.05, seed=1)[1], y)  # seeded
    assert not np.array_equal(select(images, labels, fraction=0.05, seed=2)[0], x)
    assert np.array_equal(np.bincount(select(images, labels, fraction=0.001)[1]), [1] * 10)  # at least one
    with pytest.raises(DataError, match="label fraction"):
        select(images, labels, fraction=0.0)
    with pytest.raises(DataError, match="exclude_class=10"):
        select(images, labels, exclude_class=10)


def test_perturb_replaces_the_given_fraction_of_pixels() -> None:
    import torch

    from genlab.data.images import perturb

    x = torch.full((64, 1, 28, 28), 0.5)
    torch.manual_seed(0)
    y = perturb(x, 0.2)
    changed = (y != 0.5).float().mean().item()
    assert abs(changed - 0.2) < 0.01 and y.min() >= 0.0 and y.max() <= 1.0
    assert perturb(x, 0.0) is x and torch.equal(x, torch.full_like(x, 0.5))  # the input is left as it was
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        perturb(x, 1.5)
