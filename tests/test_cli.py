"""The command line: the happy path end to end, and one-line errors for bad input."""

import subprocess
import sys

import pytest
import yaml
from conftest import tiny_recipe

from genlab import cli


def genlab(*args, capsys=None):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["genlab", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr() if capsys else None
    return code, (out.out if out else ""), (out.err if out else "")


def one_line_error(capsys, *args, match):
    code, out, err = genlab(*args, capsys=capsys)
    assert code == 2, (out, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def recipe_file(tiny_text, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tiny_text, max_steps=10, eval_interval=5)))
    return path


@pytest.fixture
def run_dir(recipe_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = genlab("train", recipe_file, "--out", out, capsys=capsys)
    assert code == 0, err
    return out


def test_train_then_sample(run_dir, capsys):
    assert (run_dir / "config.yaml").is_file() and (run_dir / "tokenizer.json").is_file()
    assert (run_dir / "checkpoints" / "best.json").is_file()
    code, out, _ = genlab(
        "sample", run_dir, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--num-samples", "3", capsys=capsys
    )
    assert code == 0
    assert out.count("--- sample") == 3 and out.count("ROMEO:") == 3
    # Same seed, same text; greedy decoding is deterministic.
    a = genlab("sample", run_dir, "--temperature", "0", "--max-new-tokens", "20", capsys=capsys)[1]
    b = genlab("sample", run_dir, "--temperature", "0", "--max-new-tokens", "20", "--seed", "9", capsys=capsys)[1]
    assert a == b


def test_params_list_and_data_list(capsys):
    code, out, _ = genlab("params", "gpt2", capsys=capsys)
    assert code == 0 and "124,439,808" in out and "blocks.*.attn" in out
    code, out, _ = genlab("list", capsys=capsys)
    assert "gpt/nanogpt-cpu" in out and "gpt3-175b" in out
    code, out, _ = genlab("data", "list", capsys=capsys)
    assert code == 0 and "tinyshakespeare" in out and "fashion-mnist" in out


def test_unknown_recipe_key_and_preset(recipe_file, tmp_path, capsys):
    one_line_error(capsys, "train", recipe_file, "train.max_stepz=3", "--out", tmp_path / "a", match="did you mean")
    one_line_error(capsys, "train", recipe_file, "model.preset=gpt5", "--out", tmp_path / "a", match="unknown preset")
    one_line_error(capsys, "train", "gpt/nope", match="unknown recipe")
    one_line_error(capsys, "params", "gpt-9", match="unknown preset")
    assert not (tmp_path / "a").exists()


def test_missing_data_source_names_the_fix(recipe_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "empty-data"))
    line = one_line_error(
        capsys, "train", recipe_file, "data.source=shakespeare", "--out", tmp_path / "a", match="shakespeare"
    )
    assert "genlab data prepare shakespeare" in line
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"\n \n", "empty"), (b"abc\x00def", "binary"), (b"caf\xe9 ol\xe9", "UTF-8")],
)
def test_bad_text_files(recipe_file, tmp_path, capsys, content, match):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    one_line_error(capsys, "train", recipe_file, f"data.source={bad}", "--out", tmp_path / "a", match=match)
    assert not (tmp_path / "a").exists()


def test_existing_run_dir_is_not_overwritten(run_dir, recipe_file, capsys):
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    one_line_error(capsys, "train", recipe_file, "--out", run_dir, match="--resume")
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert before == after


def test_resume_extends_a_finished_run(run_dir, recipe_file, capsys):
    code, _, err = genlab("train", recipe_file, "train.max_steps=14", "--out", run_dir, "--resume", capsys=capsys)
    assert code == 0, err
    import json

    assert json.loads((run_dir / "checkpoints" / "last.json").read_text())["step"] == 14


def test_overwrite_refuses_a_folder_that_is_not_a_run(recipe_file, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    one_line_error(capsys, "train", recipe_file, "--out", folder, "--overwrite", match="not a genlab run")
    assert (folder / "thesis.tex").read_text() == "precious"


def test_prompt_outside_the_vocabulary(run_dir, capsys):
    one_line_error(capsys, "sample", run_dir, "--prompt", "naïve €", match="outside the vocabulary")


def test_bad_sampling_options(run_dir, capsys):
    one_line_error(capsys, "sample", run_dir, "--temperature", "-1", match="temperature")
    one_line_error(capsys, "sample", run_dir, "--top-p", "1.5", match="top-p")
    one_line_error(capsys, "sample", run_dir, "--top-k", "-2", match="top-k")
    one_line_error(capsys, "sample", run_dir, "--max-new-tokens", "0", match="max-new-tokens")
    one_line_error(capsys, "sample", run_dir, "--beams", "0", match="beams")
    one_line_error(capsys, "sample", run_dir, "--min-p", "1.5", match="min-p")
    one_line_error(capsys, "sample", run_dir, "--context", "wrap", match="context")
    one_line_error(capsys, "sample", run_dir.parent / "nothing-here", match="not a genlab run directory")


def test_truncated_and_wrong_shape_checkpoints(run_dir, capsys):
    import json

    ptr = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    weights = run_dir / "checkpoints" / ptr["dir"] / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 3])
    one_line_error(capsys, "sample", run_dir, match="truncated")
    weights.write_bytes(good)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["model"]["n_embd"] = 64
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    one_line_error(capsys, "sample", run_dir, match="shape")


def test_debug_shows_the_traceback(tmp_path):
    env_cmd = [sys.executable, "-m", "genlab", "--debug", "train", "gpt/nope"]
    out = subprocess.run(env_cmd, capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr
    out = subprocess.run(env_cmd[:2] + ["genlab", "train", "gpt/nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
