"""Baskets from Debian control records and from transaction files."""

import json
from pathlib import Path

import pytest

from genlab.core.errors import DataError
from genlab.data.baskets import (
    DEBIAN_KIND,
    DPKG_STATUS,
    debian_baskets,
    load_baskets,
    package_baskets,
    parse_depends,
    read_transactions,
)
from genlab.data.parallel import deb822_records

PACKAGES = """\
Package: hello
Version: 2.10-3
Depends: libc6 (>= 2.34)

Package: python3-foo
Version: 1.0
Depends: python3:any (>= 3.9~), python3-bar | python3-baz, libc6 (>= 2.34),
 debconf (>= 0.5) | debconf-2.0, libc6

Package: base-files
Version: 12.4

Package: hello
Version: 2.9
Depends: something-older
"""


def test_parse_depends_keeps_the_first_alternative_without_versions_or_qualifiers():
    assert parse_depends("libc6 (>= 2.34), python3:any, debconf (>= 0.5) | debconf-2.0") == (
        "libc6",
        "python3",
        "debconf",
    )
    assert parse_depends("libstdc++6 (>= 12), g++-12 [amd64]") == ("libstdc++6", "g++-12")
    assert parse_depends("a, a (>= 1), b") == ("a", "b")  # each item once
    assert parse_depends("") == ()
    with pytest.raises(DataError, match="cannot read the dependency"):
        parse_depends("libc6 >= 2.34")


def test_package_baskets_one_per_package_first_record_wins_empty_left_out():
    baskets = package_baskets(deb822_records(PACKAGES))
    assert baskets == {
        "hello": ("libc6",),  # the first record of hello, not the older second one
        "python3-foo": ("python3", "python3-bar", "libc6", "debconf"),
    }  # base-files depends on nothing: no basket


def test_debian_baskets_read_the_indexes_and_cache_them(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "x_main_binary-amd64_Packages").write_text(PACKAGES)
    cache = tmp_path / "cache" / "baskets.json"
    b = debian_baskets(lists, status=tmp_path / "none", cache=cache)
    assert b.names == ["hello", "python3-foo"] and b.items[1] == ("python3", "python3-bar", "libc6", "debconf")
    assert b.kind == DEBIAN_KIND == "real (derived)" and "apt package indexes" in b.source
    assert cache.is_file()
    saved = json.loads(cache.read_text())
    saved["names"] = ["from", "cache"]  # the cache is what is read the second time
    cache.write_text(json.dumps(saved))
    assert debian_baskets(lists, status=tmp_path / "none", cache=cache).names == ["from", "cache"]
    (lists / "x_main_binary-amd64_Packages").write_text(PACKAGES + "\nPackage: new\nDepends: libc6\n")
    again = debian_baskets(lists, status=tmp_path / "none", cache=cache)  # an index changed: rebuilt
    assert again.names == ["hello", "new", "python3-foo"]


def test_debian_baskets_fall_back_to_dpkg_status_and_say_when_there_is_nothing(tmp_path):
    status = tmp_path / "status"
    status.write_text(PACKAGES)
    b = debian_baskets(tmp_path / "no-lists", status=status, cache=tmp_path / "c.json")
    assert len(b.items) == 2 and "installed packages" in b.source
    with pytest.raises(DataError, match="no apt package indexes"):
        debian_baskets(tmp_path / "no-lists", status=tmp_path / "none", cache=tmp_path / "c2.json")


@pytest.mark.skipif(not DPKG_STATUS.is_file(), reason="no dpkg status file on this machine")
def test_the_installed_packages_of_this_machine_are_baskets(tmp_path):
    """A small slice of the real Debian data: this machine's dpkg status file."""
    b = debian_baskets(tmp_path / "no-lists", cache=tmp_path / "c.json")
    assert len(b.items) > 50
    assert all(len(set(items)) == len(items) > 0 for items in b.items)
    assert any("libc6" in items for items in b.items)
    assert b.names == sorted(b.names)


def test_read_transactions_commas_or_spaces_comments_and_errors(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("# my shop\nmilk, bread ,milk\n\nbeer chips\n")
    b = read_transactions(f)
    assert b.items == [("milk", "bread"), ("beer", "chips")] and b.names == ["line 2", "line 4"]
    assert b.kind == "your data"
    assert load_baskets(f).items == b.items
    with pytest.raises(DataError, match="no transactions file"):
        read_transactions(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(DataError, match="holds no baskets"):
        read_transactions(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00milk")
    with pytest.raises(DataError, match="not UTF-8"):
        read_transactions(tmp_path / "bin.txt")
    assert isinstance(load_baskets(Path(f)).items[0], tuple)
