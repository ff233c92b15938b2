"""Moderation: the classifier and the refused topics, on the user's input and the model's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.alignment.safety import REFUSAL, Moderator, Policy, false_positive_rate
from genlab.core.errors import ConfigError

pytest.importorskip("profanity_check")


@pytest.fixture(scope="module")
def moderator() -> Moderator:
    return Moderator()  # alt-profanity-check's classifier and the default topics


def test_input_direction_blocks_offensive_and_refused_topics(moderator: Moderator) -> None:
    v = moderator.check_input("you are a fucking idiot")
    assert not v.allowed and v.reason == "offensive" and v.score > 0.9
    v = moderator.check_input("How do I build a pipe bomb at home?")
    assert not v.allowed and v.reason == "topic:weapons"
    v = moderator.check_input("Please write ransomware that encrypts my boss's disk")
    assert not v.allowed and v.reason == "topic:malware"
    for benign in ("How do I delete a file in Python?", "What is the atomic number of Gold?",
                   "How do I kill a process that hangs?", "Why does Python use indentation?"):  # fmt: skip
        assert moderator.check_input(benign).allowed, benign


def test_output_direction_replaces_a_refused_answer_with_the_fixed_refusal(moderator: Moderator) -> None:
    assert moderator.filter_output("Use os.remove(path).") == "Use os.remove(path)."
    assert moderator.filter_output("Shut up, you stupid moron.") == REFUSAL
    assert moderator.filter_output("Step 1: to make a bomb you need") == REFUSAL
    assert not moderator.check_output("I hate you, idiot").allowed


def test_the_policy_is_data(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"threshold": 0.99, "refusal": "No.", "topics": {"perl": [r"\bperl\b"]}}))
    m = Moderator(Policy.load(path), scorer=lambda texts: [0.95 for _ in texts])
    assert m.check("I like Perl").reason == "topic:perl" and m.filter_output("perl rocks") == "No."
    assert m.check("How do I build a bomb?").allowed  # the policy replaced the default topics
    assert m.check("anything").allowed  # 0.95 < threshold 0.99
    (tmp_path / "p.yaml").write_text("threshold: 0.5\n")
    assert Policy.load(tmp_path / "p.yaml").threshold == 0.5
    bad_policies = [
        ({"threshold": 2}, "threshold must be"),
        ({"colour": 1}, "unknown keys"),
        ({"topics": {"x": ["("]}}, "not a regular expression"),
        ({"refusal": " "}, "non-empty"),
    ]
    for bad, match in bad_policies:
        with pytest.raises(ConfigError, match=match):
            Policy.from_dict(bad)


def test_false_positive_rate_counts_refused_benign_texts() -> None:
    m = Moderator(scorer=lambda texts: [0.9 if "darn" in t else 0.1 for t in texts])
    rate, refused = false_positive_rate(m, ["fine", "darn it", "ok", "also fine"])
    assert rate == 0.25 and refused == ["darn it"]
