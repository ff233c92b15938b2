"""The Python standard library as an NL-PL corpus: (docstring summary, code) pairs.

Every function and method of the running interpreter's standard library that has a docstring
gives one :class:`CodePair` (Husain et al. 2019, CodeSearchNet, built its Python set the same way):

    query = the docstring's first paragraph, on one line      "Return the number of items."
    code  = the function's source without the docstring,      "def __len__(self):
            dedented (decorators excluded)                         return len(self._data)"

The code never contains its docstring, so a search model cannot match a query by copying it.
Pairs are dropped when the summary has fewer than ``min_words`` words, when the body is the
docstring alone (nothing to search for), or when the docstring is on the ``def`` line. Pairs are
deduplicated: a summary (compared lower-cased, whitespace collapsed) or a code text seen before
is skipped, so each test query has exactly one right answer.

Files are read in sorted path order; ``test``/``tests``/``idle_test`` folders, ``idlelib``,
``site-packages``, ``lib2to3``, ``turtledemo``, ``ensurepip``, ``pydoc_data``, ``lib-dynload``,
``config-*`` and caches are skipped (:data:`SKIP_DIRS`), as are files that do not parse.

:func:`split_by_package` splits by top-level package (``email.mime.text`` -> ``email``) so that
no test function, nor a sibling of it in the same package, is seen in training.

Tier 1: imports only ``genlab.core``, numpy and the standard library.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from genlab.core.errors import DataError

#: Folder names never read below the standard library root.
SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "site-packages",
        "dist-packages",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "pydoc_data",
        "lib-dynload",
        "__pycache__",
        "__phello__",
    }
)
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class CodePair:
    query: str  # the docstring's first paragraph, whitespace collapsed
    code: str  # the function's source without its docstring, dedented
    module: str  # dotted module name, e.g. "email.utils"
    name: str  # qualified name inside the module, e.g. "Message.get_param"

    @property
    def package(self) -> str:
        return self.module.split(".")[0]


@dataclass
class CodeSearchSplit:
    train: list[CodePair]
    val: list[CodePair]
    test: list[CodePair]


def stdlib_root() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def docstring_summary(doc: str) -> str:
    """The first paragraph of a (cleaned) docstring on one line: whitespace runs become one space."""
    return _WS.sub(" ", doc.strip().split("\n\n")[0]).strip()


def _function_code(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The source of ``node`` (from its ``def`` line, decorators excluded) without the docstring
    statement, dedented; None when the body is the docstring alone or shares a line with it."""
    doc = node.body[0]
    if doc.lineno == node.lineno or len(node.body) < 2 or node.body[1].lineno <= doc.end_lineno:
        return None  # one-liners like `def f(): "doc"; return 1` cannot be cut by lines
    kept = lines[node.lineno - 1 : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    code = textwrap.dedent("".join(kept)).strip("\n")
    return code or None


def extract_pairs(source: str, module: str, min_words: int = 3) -> list[CodePair]:
    """(summary, code) pairs of every documented function and method of one module's source.

    Functions nested in functions or classes count, named by their qualified path. SyntaxError
    propagates (the caller decides whether a file that does not parse is skipped).
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    pairs: list[CodePair] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                doc = ast.get_docstring(child, clean=True)
                if doc:
                    query = docstring_summary(doc)
                    code = _function_code(lines, child)
                    if code is not None and len(query.split()) >= min_words:
                        pairs.append(CodePair(query, code, module, name))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return pairs


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts[:-1]
        if any(part in SKIP_DIRS or part.startswith("config-") for part in rel):
            continue
        files.append(path)
    return files


def _key(text: str) -> str:
    return _WS.sub(" ", text.lower()).strip()


@lru_cache(maxsize=4)
def _cached_pairs(root: str, min_words: int) -> tuple[CodePair, ...]:
    base = Path(root)
    pairs: list[CodePair] = []
    seen_query: set[str] = set()
    seen_code: set[str] = set()
    for path in _python_files(base):
        try:
            source = path.read_text(encoding="utf-8")
            found = extract_pairs(source, _module_name(path, base), min_words)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a file that does not parse as this interpreter's Python (templates, fixtures)
        for pair in found:
            q, c = _key(pair.query), pair.code
            if q in seen_query or c in seen_code:
                continue
            seen_query.add(q)
            seen_code.add(c)
            pairs.append(pair)
    return tuple(pairs)


def stdlib_pairs(root: Path | str | None = None, min_words: int = 3) -> list[CodePair]:
    """Every deduplicated (docstring summary, code) pair below ``root`` (default: :func:`stdlib_root`),
    in sorted file order. Parsed once per process and root."""
    base = Path(root) if root is not None else stdlib_root()
    if not base.is_dir():
        raise DataError(f"{base} is not a folder of Python sources")
    pairs = list(_cached_pairs(str(base.resolve()), min_words))
    if not pairs:
        raise DataError(f"{base} holds no documented Python functions")
    return pairs


def _order(name: str, seed: int) -> str:
    """A seeded pseudo-random sort key that does not depend on Python's hash randomisation."""
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split_by_package(
    pairs: list[CodePair], test_size: int = 1000, val_size: int = 200, seed: int = 0
) -> CodeSearchSplit:
    """Split pairs by top-level package: packages in a seeded order fill the test split until it
    has ``test_size`` pairs, then the validation split until ``val_size``; the rest is training.
    The last package taken may overfill a split: a seeded sample of the split's pairs is kept
    (in file order) and the surplus is dropped, never moved to another split. Test and validation
    need a package each and training at least one pair."""
    if test_size < 1 or val_size < 0:
        raise DataError(f"test_size must be >= 1 and val_size >= 0, got {test_size} and {val_size}")
    by_package: dict[str, list[CodePair]] = {}
    for p in pairs:
        by_package.setdefault(p.package, []).append(p)
    order = sorted(by_package, key=lambda name: _order(name, seed))
    chosen: list[list[CodePair]] = [[], []]
    i = 0
    for split, size in enumerate((test_size, val_size)):
        while len(chosen[split]) < size and i < len(order):
            chosen[split].extend(by_package[order[i]])
            i += 1
    train = [p for name in order[i:] for p in by_package[name]]
    if len(chosen[0]) < test_size or len(chosen[1]) < val_size or not train:
        raise DataError(
            f"{len(pairs)} pairs in {len(by_package)} packages cannot fill a test split of {test_size} "
            f"and a validation split of {val_size} and leave training pairs: ask for fewer"
        )
    rng = np.random.default_rng(seed)
    test, val = (
        [split[j] for j in np.sort(rng.choice(len(split), size=size, replace=False))]
        for split, size in zip(chosen, (test_size, val_size))
    )
    return CodeSearchSplit(train, val, test)
