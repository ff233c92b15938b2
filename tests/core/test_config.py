from dataclasses import dataclass, field

import pytest

from genlab.core.config import from_dict, merge, parse_overrides
from genlab.core.errors import ConfigError
from genlab.core.registry import preset


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10
    name: str = "x"
    flag: bool = False
    maybe: int | None = None


@dataclass
class Outer:
    train: Inner = field(default_factory=Inner)
    tag: str = "a"


def test_overrides_are_typed_and_merged():
    over = parse_overrides(["train.lr=3e-4", "train.steps=20", "train.flag=true", "tag=b", "train.maybe=5"])
    cfg = from_dict(Outer, merge({"train": {"name": "y"}}, over))
    assert cfg.train == Inner(lr=3e-4, steps=20, name="y", flag=True, maybe=5)
    assert cfg.tag == "b"


def test_yaml_style_exponent_string_becomes_float():
    assert from_dict(Inner, {"lr": "1e-3"}).lr == 1e-3


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, {"train": {"stepz": 3}})
    msg = str(e.value)
    assert "train.stepz" in msg and "did you mean 'steps'" in msg and "flag, lr, maybe, name, steps" in msg


def test_bad_values_and_overrides():
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Inner, {"steps": "many"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.lr"])


def test_unknown_preset_suggests():
    import genlab.models  # noqa: F401

    with pytest.raises(ConfigError, match="did you mean gpt2"):
        preset("gpt-2")
