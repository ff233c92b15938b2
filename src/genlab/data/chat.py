"""Chat data: conversations for SFT, checkable questions, preference pairs, and their JSONL files.

Three JSONL formats, one JSON object a line (extra keys are kept and ignored):

    conversations   {"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}], "source": ...}
    preferences     {"prompt": ..., "chosen": ..., "rejected": ..., "source": ...}
    questions       {"prompt": ..., "answer": ..., "source": ...}

Readers say which line of which file is malformed, in one line. Every row carries ``source`` (where
it came from), ``kind`` (``real``, ``templated`` or ``programmatic``/``user`` for preferences) and
``item`` (the source item it was made from: an FAQ entry, an element, a headword): splits are by
item (:func:`split_of`, a hash), so paraphrases of one item never straddle train and test.

Parsers of the real sources (offline, from Debian packages and the chatterbot-corpus wheel):

- the Python FAQ (``faq/*.rst.txt`` in python3-doc's ``_sources``: a question is a heading
  underlined with ``-``, its answer the text up to the next heading) and glossary (``glossary::``
  terms, indented definitions);
- perlfaq (``perlfaq[1-9].pod``: ``=head2`` questions);
- the Debian FAQ (``debian-faq.en.txt.gz``: ``N.M. Question`` lines, indented answers);
- chatterbot-corpus's English ``*.yml`` conversations (turns alternate user / assistant).

Templated, checkable questions (``kind: templated``): element symbol, atomic number and weight
(dict-elements, Z <= 103), English -> French word translations (freedict eng-fra), and which
FOLDOC headword a definition belongs to. :func:`check_answer` says whether an answer is right
(the verifiable reward); :func:`checker_preferences` turns model samples into preference pairs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from genlab.core.errors import DataError

SPLITS = {"train": 0.9, "validation": 0.05, "test": 0.05}
ROLES = ("system", "user", "assistant", "developer")
#: What a model should say when it does not know; preferred over a wrong answer.
ABSTAIN = "I don't know."
_ABSTAIN_RE = re.compile(r"\b(i don'?t know|i do not know|not sure|no idea|cannot answer|can't answer)\b", re.I)


# ------------------------------------------------------------------------------------------
# JSONL readers and writers.


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write rows as JSON lines (UTF-8, atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def append_jsonl(path: str | os.PathLike, row: dict) -> Path:
    """Append one row (the user's rankings from ``genlab chat /compare``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; a bad line is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"no file {path}: check the path")
    with open(path, encoding="utf-8") as handle:
        try:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: not valid JSON ({e.msg}): fix or delete that line") from e
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
                yield n, row
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 ({e.reason}): convert it to UTF-8") from e


def _need_strings(path: Path, n: int, row: dict, keys: Sequence[str], what: str) -> None:
    for key in keys:
        if not isinstance(row.get(key), str):
            got = "missing" if key not in row else type(row[key]).__name__
            raise DataError(f"{path}:{n}: a {what} needs a string '{key}' ({got}); keys are {list(keys)}")


def read_conversations(path: str | os.PathLike) -> list[dict]:
    """``{"messages": [{"role", "content"}, ...]}`` rows; at least one assistant message each."""
    path, out = Path(path), []
    for n, row in iter_jsonl(path):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{path}:{n}: a conversation needs a non-empty list 'messages'")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"{path}:{n}: message {i} needs a 'role' in {list(ROLES)} and a string 'content'")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{path}:{n}: the conversation has no assistant message to learn from")
        out.append(row)
    return out


def read_preferences(path: str | os.PathLike) -> list[dict]:
    """``{"prompt", "chosen", "rejected", "source"}`` rows (chosen != rejected)."""
    path, out = Path(path), []
    for n, row in iter_jsonl(path):
        _need_strings(path, n, row, ("prompt", "chosen", "rejected", "source"), "preference")
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{path}:{n}: 'chosen' and 'rejected' are the same text: a pair needs two answers")
        out.append(row)
    return out


def read_questions(path: str | os.PathLike) -> list[dict]:
    """``{"prompt", "answer", "source"}`` rows."""
    path, out = Path(path), []
    for n, row in iter_jsonl(path):
        _need_strings(path, n, row, ("prompt", "answer", "source"), "checkable question")
        out.append(row)
    return out


def conversation(prompt: str, answer: str, system: str | None = None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


# ------------------------------------------------------------------------------------------
# Splits by source item.


def split_of(item: str, splits: dict[str, float] = SPLITS) -> str:
    """The split of a source item: a hash of its id, the same on every machine and every run."""
    u = int.from_bytes(hashlib.sha256(item.encode("utf-8")).digest()[:8], "big") / 2.0**64
    total = 0.0
    for name, share in splits.items():
        total += share
        if u < total:
            return name
    return list(splits)[-1]


def with_splits(rows: list[dict]) -> list[dict]:
    """Each row with ``split`` set from its ``item`` (rows of one item share a split)."""
    return [{**r, "split": split_of(f"{r['source']}:{r['item']}")} for r in rows]


# ------------------------------------------------------------------------------------------
# Real question-answer sources.

_RST_ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")
_RST_LITERAL = re.compile(r"``([^`]+)``")


def rst_plain(text: str) -> str:
    """reST markup turned to plain text: roles, links and literals kept as their words; directives dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(".. ")]
    text = "\n".join(lines)
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_ROLE.sub(r"\1", text)
    text = _RST_LITERAL.sub(r"\1", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _paragraphs_limit(text: str, max_chars: int) -> str:
    """The leading paragraphs of ``text`` that fit in ``max_chars`` (at least the first)."""
    paras = [p.strip("\n").rstrip() for p in text.split("\n\n") if p.strip()]
    out: list[str] = []
    for p in paras:
        if out and len("\n\n".join([*out, p])) > max_chars:
            break
        out.append(p)
    return "\n\n".join(out)


def python_faq_pairs(sources_dir: Path, max_chars: int = 1500) -> list[dict]:
    """Question rows from python3-doc's ``_sources/faq/*.rst.txt`` (headings underlined with ``-``)."""
    rows = []
    for path in sorted((sources_dir / "faq").glob("*.rst.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        heads = [
            i for i in range(len(lines) - 1)
            if lines[i].strip() and re.fullmatch(r"-{3,}", lines[i + 1].strip())
            and len(lines[i + 1]) >= len(lines[i].rstrip()) - 1
        ]  # fmt: skip
        for k, i in enumerate(heads):
            end = heads[k + 1] if k + 1 < len(heads) else len(lines)
            body = lines[i + 2 : end]
            # a level-1 heading (underlined with '=') ends the answer too
            for j in range(len(body) - 1):
                if body[j].strip() and re.fullmatch(r"[=*]{3,}", body[j + 1].strip()):
                    body = body[:j]
                    break
            question = rst_plain(lines[i].strip())
            answer = _paragraphs_limit(rst_plain("\n".join(body)), max_chars)
            if question and answer:
                rows.append({"prompt": question, "answer": answer, "source": "python-faq", "kind": "real",
                             "item": f"{path.name}#{question}"})  # fmt: skip
    return rows


def python_glossary_pairs(glossary: Path, max_chars: int = 1200) -> list[dict]:
    """``What is <term> in Python?`` rows from python3-doc's ``glossary.rst.txt``."""
    lines = glossary.read_text(encoding="utf-8").splitlines()
    rows, term, body = [], None, []

    def flush():
        if term and body:
            answer = _paragraphs_limit(rst_plain("\n".join(body)), max_chars)
            if answer:
                rows.append({"prompt": f"What is {term} in Python?", "answer": answer, "source": "python-glossary",
                             "kind": "real", "item": term})  # fmt: skip

    started = False
    for line in lines:
        if line.strip() == ".. glossary::":
            started = True
            continue
        if not started:
            continue
        if line.startswith("   ") and not line.startswith("    ") and line.strip():
            flush()
            term, body = rst_plain(line.strip()), []
        elif term is not None:
            body.append(line[6:] if line.startswith("      ") else line.strip())
    flush()
    return rows


_POD_CODES = re.compile(r"[BCFILSE]<+\s*(.*?)\s*>+")


def pod_plain(text: str) -> str:
    """POD markup to plain text (formatting codes kept as their words, commands dropped)."""
    lines = [ln for ln in text.splitlines() if not ln.startswith("=")]
    text = "\n".join(lines)
    for _ in range(3):  # nested codes
        text = _POD_CODES.sub(r"\1", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def perlfaq_pairs(pod_dir: Path, max_chars: int = 1500) -> list[dict]:
    """Question rows from ``perlfaq1.pod`` .. ``perlfaq9.pod`` (``=head2`` questions)."""
    rows = []
    for path in sorted(pod_dir.glob("perlfaq[1-9].pod")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts = re.split(r"^=head2[ \t]+(.+)$", text, flags=re.M)
        for question, body in zip(parts[1::2], parts[2::2], strict=True):
            body = re.split(r"^=head1", body, flags=re.M)[0]
            answer = _paragraphs_limit(pod_plain(body), max_chars)
            question = pod_plain(question.strip())
            if question and answer:
                rows.append({"prompt": question, "answer": answer, "source": "perlfaq", "kind": "real",
                             "item": f"{path.stem}#{question}"})  # fmt: skip
    return rows


_DEBIAN_Q = re.compile(r"^(\d+)\.(\d+)\.\s+(\S.*)$")


def debian_faq_pairs(text_gz: Path, max_chars: int = 1500) -> list[dict]:
    """Question rows from the Debian FAQ's text edition (``N.M. Question`` lines, indented answers)."""
    lines = gzip.decompress(text_gz.read_bytes()).decode("utf-8", errors="replace").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("Chapter 1.")), 0)
    rows: list[dict] = []
    question: list[str] | None = None
    number, body = "", []

    def flush():
        if question and body:
            answer = _paragraphs_limit("\n".join(body).strip(), max_chars)
            if answer:
                rows.append({"prompt": " ".join(question), "answer": answer, "source": "debian-faq", "kind": "real",
                             "item": number})  # fmt: skip

    in_question = False
    for line in lines[start:]:
        m = _DEBIAN_Q.match(line)
        if m:
            flush()
            number, question, body, in_question = f"{m[1]}.{m[2]}", [m[3].strip()], [], True
        elif line.startswith("Chapter "):
            flush()
            question, body, in_question = None, [], False
        elif question is not None:
            if in_question and line.strip() and not line.startswith("    "):
                question.append(line.strip())  # a wrapped question line
                continue
            in_question = False
            body.append(line[4:] if line.startswith("    ") else line.strip())
    flush()
    return rows


def chatterbot_conversations(root: Path) -> list[dict]:
    """Conversation rows from chatterbot-corpus's ``data/english/*.yml`` (turns alternate user / assistant)."""
    import yaml

    files = sorted(root.rglob("english/*.yml"))
    rows = []
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise DataError(f"{path} is not readable YAML ({str(e).splitlines()[0]}): prepare chatterbot again") from e
        for k, turns in enumerate(data.get("conversations") or []):
            turns = [str(t).strip() for t in turns if t is not None and str(t).strip()]
            if len(turns) < 2:
                continue
            turns = turns[: len(turns) - len(turns) % 2]
            messages = [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
            rows.append({"messages": messages, "source": "chatterbot", "kind": "real", "item": f"{path.stem}#{k}"})
    return rows


def unpack_chatterbot(wheel: Path, target: Path) -> Path:
    """Unzip the English YAML files of a ``chatterbot_corpus`` wheel into ``target`` (never installed)."""
    try:
        with zipfile.ZipFile(wheel) as z:
            names = [n for n in z.namelist() if "/data/english/" in n and n.endswith(".yml")]
            if not names:
                raise DataError(f"{wheel} has no data/english/*.yml: use the chatterbot-corpus wheel")
            for name in names:
                out = target / "english" / Path(name).name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(z.read(name))
    except zipfile.BadZipFile as e:
        raise DataError(f"{wheel} is not a wheel ({e}): delete it and prepare chatterbot again") from e
    return target


def qa_conversations(rows: Iterable[dict]) -> list[dict]:
    """Question rows -> conversation rows (one user turn, one assistant turn), keeping source/kind/item."""
    return [{"messages": conversation(r["prompt"], r["answer"]),
             **{k: r[k] for k in ("source", "kind", "item", "split") if k in r}} for r in rows]  # fmt: skip


# ------------------------------------------------------------------------------------------
# dictd dictionaries (elements, FOLDOC, Jargon File).

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 64 + _B64.index(ch)
    return n


def read_dictd_entries(index: Path) -> list[tuple[str, str]]:
    """(headword, entry text) in index order from ``<name>.index`` + ``<name>.dict.dz`` (metadata skipped)."""
    try:
        data = gzip.decompress(index.with_suffix(".dict.dz").read_bytes())
        lines = index.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the dictionary {index} ({e}): reinstall its dict-* package") from e
    out = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith(("00-database", "00database")):
            continue
        start, length = _b64(parts[1]), _b64(parts[2])
        out.append((parts[0], data[start : start + length].decode("utf-8", errors="replace")))
    return out


def dictd_text(index: Path) -> str:
    """A dictionary as pretraining text: each entry, a blank line between."""
    return "\n\n".join(body.strip() for _, body in read_dictd_entries(index)) + "\n"


def read_elements(index: Path, max_z: int = 103) -> list[dict]:
    """``{"name", "symbol", "number", "weight"}`` per element with Z <= ``max_z`` (dict-elements)."""
    out = []
    for head, body in read_dictd_entries(index):
        sym = re.search(r"^Symbol:\s*(\S+)", body, re.M)
        num = re.search(r"^Atomic number:\s*(\d+)", body, re.M)
        wt = re.search(r"^Atomic weight:\s*\(?([\d.]+)", body, re.M)
        if sym and num and wt and int(num[1]) <= max_z:
            out.append({"name": head.strip().lower(), "symbol": sym[1], "number": int(num[1]), "weight": float(wt[1])})
    return sorted({e["number"]: e for e in out}.values(), key=lambda e: e["number"])


def element_questions(elements: list[dict]) -> list[dict]:
    """Three templated questions per element; the item is the element (all three share a split)."""
    rows = []
    for e in elements:
        name = e["name"].capitalize()
        for prompt, answer, check in (
            (f"What is the chemical symbol of {name}?", e["symbol"], "exact"),
            (f"What is the atomic number of {name}?", str(e["number"]), "integer"),
            (f"What is the atomic weight of {name}?", f"{e['weight']:g}", "number"),
        ):
            rows.append({"prompt": prompt, "answer": answer, "source": "elements", "kind": "templated",
                         "item": e["name"], "check": check})  # fmt: skip
    return rows


def translation_questions(dictionary: dict[str, str], limit: int | None = 2000, seed: int = 0) -> list[dict]:
    """``What is the French for "<word>"?`` from freedict eng-fra (single-word headwords)."""
    words = sorted(w for w, t in dictionary.items() if re.fullmatch(r"[a-z]{3,}", w) and t)
    if limit is not None and len(words) > limit:
        words = sorted(random.Random(seed).sample(words, limit))
    return [{"prompt": f'What is the French for "{w}"?', "answer": dictionary[w], "source": "eng-fra",
             "kind": "templated", "item": w, "check": "exact"} for w in words]  # fmt: skip


def _foldoc_definition(body: str) -> str | None:
    """The first sentence of a FOLDOC entry's first sense (its first paragraph after the headword),
    braces, the sense number and the <domain> label removed."""
    paragraphs = [p for p in re.split(r"\n\s*\n", body.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return None
    text = " ".join(ln.strip() for ln in paragraphs[1].splitlines())
    text = re.sub(r"^1\.\s*", "", text)
    text = re.sub(r"^(<[^>]+>\s*)+", "", text)
    text = text.replace("{", "").replace("}", "")
    m = re.match(r"(.{20,300}?[.])(\s|$)", text)
    return m[1] if m else None


def foldoc_questions(index: Path, limit: int | None = 2000, seed: int = 0) -> list[dict]:
    """``Which computing term does FOLDOC define as: "..."?`` -> the headword (the definition with the
    headword blanked out, so the question does not give the answer away). One question per entry,
    asked under its own headword (aliases that point to the same entry are skipped)."""
    rows, seen = [], set()
    for head, body in read_dictd_entries(index):
        word = body.splitlines()[0].strip() if body.strip() else ""
        if word.lower() != head.strip().lower() or word.lower() in seen:
            continue
        definition = _foldoc_definition(body)
        if not definition or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+#\- ]{1,30}", word):
            continue
        seen.add(word.lower())
        definition = re.sub(re.escape(word), "___", definition, flags=re.I)
        rows.append({"prompt": f'Which computing term does FOLDOC define as: "{definition}"?', "answer": word,
                     "source": "foldoc", "kind": "templated", "item": word.lower(), "check": "exact"})  # fmt: skip
    if limit is not None and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return rows


# ------------------------------------------------------------------------------------------
# The checker: is an answer to a checkable question correct?

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _norm(text: str) -> str:
    text = text.strip().lower()
    text = re.sub(r"^(the|a|an)\s+", "", text)
    return re.sub(r"[\s\"'`.,!?;:()]+", " ", text).strip()


def is_abstention(text: str) -> bool:
    """Does the answer say it does not know?"""
    return bool(_ABSTAIN_RE.search(text))


def check_answer(question: dict, text: str) -> bool:
    """True when ``text`` answers ``question`` correctly.

    ``check`` says how: ``integer`` (the first number in the text equals the answer), ``number``
    (the first number is within 0.5% of it), ``exact`` (default: the normalised text equals the
    answer, or its first line does, or the answer appears in it as a whole word/phrase). An
    abstention is never correct.
    """
    if not text.strip() or is_abstention(text):
        return False
    kind, answer = question.get("check", "exact"), question["answer"]
    if kind in ("integer", "number"):
        m = _NUMBER.search(text.replace(",", ""))
        if not m:
            return False
        got, want = float(m[0]), float(answer)
        return got == want if kind == "integer" else abs(got - want) <= 0.005 * abs(want)
    got, want = _norm(text), _norm(answer)
    if not want:
        return False
    if got == want or _norm(text.strip().splitlines()[0]) == want:
        return True
    if kind == "exact" and len(want) <= 2:  # a chemical symbol: case matters, as a whole token
        return re.search(rf"(?<![A-Za-z]){re.escape(answer.strip())}(?![a-z])", text) is not None
    return re.search(rf"(?<!\w){re.escape(want)}(?!\w)", got) is not None


def reward(question: dict, text: str) -> float:
    """The verifiable reward: 1 for a correct answer, 0 for an abstention, -1 for a wrong one."""
    if check_answer(question, text):
        return 1.0
    return 0.0 if is_abstention(text) else -1.0


# ------------------------------------------------------------------------------------------
# Preference pairs.


def checker_preferences(question: dict, samples: Sequence[str], abstain: str = ABSTAIN) -> list[dict]:
    """Pairs judged by the checker from a model's samples for one question (``kind: programmatic``).

    correct > wrong, abstain > wrong, correct > abstain; the reference answer stands in for "correct"
    when no sample is right. Samples that abstain count as the abstention.
    """
    correct = [s for s in samples if check_answer(question, s)]
    wrong = [s for s in samples if s.strip() and not check_answer(question, s) and not is_abstention(s)]
    right = correct[0] if correct else question["answer"]
    base = {"prompt": question["prompt"], "source": f"checker:{question['source']}", "kind": "programmatic",
            "item": question.get("item", question["prompt"])}  # fmt: skip
    pairs = []
    for w in dict.fromkeys(wrong):
        pairs.append({**base, "chosen": right, "rejected": w, "judgement": "correct>wrong"})
        pairs.append({**base, "chosen": abstain, "rejected": w, "judgement": "abstain>wrong"})
    pairs.append({**base, "chosen": right, "rejected": abstain, "judgement": "correct>abstain"})
    return pairs


def faq_preferences(rows: Sequence[dict], seed: int = 0) -> list[dict]:
    """The real answer preferred over the answer to another question of the same source and split
    (``kind: programmatic``; a test question's answer never shows up in a training pair)."""
    rng = random.Random(seed)
    by_source: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_source.setdefault((r["source"], r.get("split", "")), []).append(r)
    out = []
    for (source, _split), group in by_source.items():
        if len(group) < 2:
            continue
        for i, r in enumerate(group):
            j = rng.randrange(len(group) - 1)
            other = group[j + (j >= i)]
            if other["answer"] == r["answer"]:
                continue
            out.append({"prompt": r["prompt"], "chosen": r["answer"], "rejected": other["answer"],
                        "source": f"faq-mismatch:{source}", "kind": "programmatic", "item": r.get("item", ""),
                        **({"split": r["split"]} if "split" in r else {})})  # fmt: skip
    return out


def user_preference(prompt: str, a: str, b: str, choice: str, model: str = "") -> dict:
    """A ``/compare`` ranking: ``choice`` is "a" or "b" (``kind: user``; ``genlab chat`` adds the
    user's ``thumbs``, "up" or "down", for the preferred answer)."""
    if choice not in ("a", "b"):
        raise DataError(f"choose 'a' or 'b', got {choice!r}")
    chosen, rejected = (a, b) if choice == "a" else (b, a)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "source": "user", "kind": "user", "model": model}


# ------------------------------------------------------------------------------------------
# The pretraining mixture.


def mixture(texts: dict[str, str], shares: dict[str, float], total_chars: int, seed: int = 0) -> str:
    """Documents drawn from each source's text in proportion to its share, ``total_chars`` in all.

    Each text is cut into documents at blank lines; a source gives ``share * total_chars`` characters
    (repeating its documents when it has fewer, so small sources are upsampled); the documents of all
    sources are shuffled together.
    """
    unknown = sorted(set(shares) - set(texts))
    if unknown:
        raise DataError(f"mixture shares name {unknown}, which have no text; sources: {sorted(texts)}")
    total = sum(shares.values())
    if total <= 0 or any(s < 0 for s in shares.values()):
        raise DataError(f"mixture shares must be >= 0 with a positive sum, got {shares}")
    rng = random.Random(seed)
    docs: list[str] = []
    for name, share in shares.items():
        pieces = [p.strip() for p in re.split(r"\n\s*\n", texts[name]) if p.strip()]
        if not pieces or share == 0:
            continue
        want, got, k = share / total * total_chars, 0, 0
        order = list(range(len(pieces)))
        rng.shuffle(order)
        while got < want:
            piece = pieces[order[k % len(order)]]
            docs.append(piece)
            got, k = got + len(piece) + 2, k + 1
    rng.shuffle(docs)
    return "\n\n".join(docs) + "\n"
