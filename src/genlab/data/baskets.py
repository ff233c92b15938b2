"""Transactions for market-basket analysis: baskets of items, one per line or one per Debian package.

No classic transaction set (groceries, retail) installs offline on these machines, so the named
source ``debian-depends`` derives an honest one from real data: every Debian package that
depends on something is a basket, and the packages its ``Depends:`` field names are the items.
Kind: **real (derived)**: the dependency lists are real, written by Debian's maintainers; calling
them baskets is our reading. A rule such as {libqt5gui5} -> {libqt5core5a} then says which
libraries are pulled in together.

A ``Depends:`` field is a comma-separated list of relations; each relation is one package or
alternatives ``a | b`` (the first is what apt installs by default, so it is the item), with an
optional version constraint ``(>= 1.2)`` and architecture qualifier ``:any`` (both dropped)::

    Depends: libc6 (>= 2.34), python3:any, debconf (>= 0.5) | debconf-2.0

    -> ("libc6", "python3", "debconf")

Records come from apt's package indexes (``/var/lib/apt/lists/*_Packages*``; bookworm main has
~63,700 packages, ~56,000 of them with a ``Depends:`` field), read in sorted file order with the
first record of each package kept (the security and updates indexes sort before main, so a
package's newest version wins). Without apt indexes the installed packages of
``/var/lib/dpkg/status`` serve instead (a few hundred). The baskets are cached under
``$GENLAB_DATA/debian-depends/`` and rebuilt when an index changes.

A transactions file of your own (:func:`read_transactions`) holds one basket a line, its items
separated by commas (or by white space when a line has no comma); ``#`` starts a comment line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from genlab.core.errors import DataError
from genlab.core.paths import data_dir
from genlab.data.parallel import deb822_records, read_apt_index
from genlab.data.sources import APT_LISTS_DIR

DPKG_STATUS = Path("/var/lib/dpkg/status")
DEBIAN_SOURCE = "debian-depends"
DEBIAN_KIND = "real (derived)"
_CACHE_VERSION = 1


class Baskets(NamedTuple):
    """Transactions: ``items[i]`` is basket i (distinct items, in the order first listed), ``names[i]``
    what the basket is (a package name, or ``line N`` of a file); ``source`` and ``kind`` say where
    they come from (kind: real / real (derived) / templated / generated)."""

    items: list[tuple[str, ...]]
    names: list[str]
    source: str
    kind: str


_RELATION = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9+.\-]*)(?::[a-z0-9\-]+)?\s*(?:\(.*\))?\s*(?:\[.*\])?\s*$")


def parse_depends(field: str) -> tuple[str, ...]:
    """The package names of a ``Depends:`` field: the first alternative of each relation, without
    version constraints or architecture qualifiers, each name once, in order."""
    names: dict[str, None] = {}
    for relation in field.replace("\n", " ").split(","):
        first = relation.split("|")[0]
        if not first.strip():
            continue
        m = _RELATION.match(first)
        if m is None:
            raise DataError(f"cannot read the dependency {first.strip()!r} (in {field.strip()[:80]!r})")
        names[m.group(1)] = None
    return tuple(names)


def package_baskets(records: Iterable[dict[str, str]]) -> dict[str, tuple[str, ...]]:
    """Package name -> its Depends items, for control records (``deb822_records``); the first record of
    a name wins; packages with no (or an empty) ``Depends:`` field are left out."""
    out: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    for r in records:
        name = r.get("Package")
        if not name or name in seen:
            continue
        seen.add(name)
        items = tuple(i for i in parse_depends(r.get("Depends", "")) if i != name)
        if items:
            out[name] = items
    return out


def debian_index_files(lists_dir: Path = APT_LISTS_DIR) -> list[Path]:
    """apt's binary package indexes under ``lists_dir``, sorted (empty after ``apt-get clean`` of lists)."""
    return sorted(p for p in Path(lists_dir).glob("*_Packages*") if p.is_file())


def _signature(files: list[Path]) -> list[list]:
    return [[str(p), p.stat().st_size, int(p.stat().st_mtime)] for p in files]


def debian_baskets(lists_dir: Path = APT_LISTS_DIR, status: Path = DPKG_STATUS, cache: Path | None = None) -> Baskets:
    """One basket per Debian package with dependencies (see the module docstring), from apt's indexes
    in ``lists_dir``, else from dpkg's ``status`` file. ``cache`` (default
    ``$GENLAB_DATA/debian-depends/baskets.json``; pass a path to move it) is read when it was built from
    the same files, else (re)written."""
    files = debian_index_files(lists_dir)
    where = f"apt package indexes in {lists_dir}"
    if not files:
        if not Path(status).is_file():
            raise DataError(
                f"no apt package indexes in {lists_dir} and no {status}: run apt-get update, "
                "or pass a transactions file of your own"
            )
        files, where = [Path(status)], f"installed packages in {status}"
    cache = Path(cache) if cache is not None else data_dir() / DEBIAN_SOURCE / "baskets.json"
    sig = _signature(files)
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text(encoding="utf-8"))
            if saved.get("version") == _CACHE_VERSION and saved.get("files") == sig:
                return Baskets([tuple(b) for b in saved["items"]], saved["names"], saved["source"], DEBIAN_KIND)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt
    baskets: dict[str, tuple[str, ...]] = {}
    for f in files:
        text = read_apt_index(f) if f != Path(status) else f.read_text(encoding="utf-8", errors="replace")
        for name, items in package_baskets(deb822_records(text)).items():
            baskets.setdefault(name, items)
    if not baskets:
        raise DataError(f"the {where} list no package with dependencies")
    names = sorted(baskets)
    source = f"Debian Depends: lists ({where})"
    out = Baskets([baskets[n] for n in names], names, source, DEBIAN_KIND)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        payload = {"version": _CACHE_VERSION, "files": sig, "source": source, "names": names, "items": out.items}
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        tmp.replace(cache)
    except OSError:
        pass  # a read-only data folder: no cache, same baskets
    return out


def read_transactions(path: str | Path, kind: str = "your data") -> Baskets:
    """Baskets from a text file, one a line: items separated by commas (or white space when the line has
    none), each item once per basket; blank lines and ``#`` comments are skipped. ``kind`` names the
    data's kind for reports (default ``your data``: genlab cannot tell; say real, templated or generated)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no transactions file {p}: give one basket a line, items separated by commas")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}): give a text file") from exc
    items, names = [], []
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split(",") if "," in s else s.split()
        basket = tuple(dict.fromkeys(i.strip() for i in parts if i.strip()))
        if basket:
            items.append(basket)
            names.append(f"line {n}")
    if not items:
        raise DataError(f"{p} holds no baskets: give one basket a line, items separated by commas")
    return Baskets(items, names, f"transactions file {p}", kind)


def load_baskets(source: str | Path = DEBIAN_SOURCE) -> Baskets:
    """``debian-depends`` (the default) or a transactions file."""
    if str(source) == DEBIAN_SOURCE:
        return debian_baskets()
    return read_transactions(source)
