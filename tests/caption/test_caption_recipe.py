"""The caption recipe end to end on a few real Tux Paint drawings: a run directory like every
family's, exact resume, genlab eval beside the nearest-neighbour baseline, genlab caption."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from genlab import cli
from genlab.core.config import merge
from genlab.core.errors import ConfigError
from genlab.data.captions import TUXPAINT_DIR, split_of
from genlab.recipes import list_recipes, load_recipe, run_task
from genlab.recipes.caption import read_image
from genlab.training.checkpoint import find_checkpoint

pytestmark = pytest.mark.skipif(
    not TUXPAINT_DIR.is_dir(), reason="Debian tuxpaint-stamps-default is not installed (apt-get install it)"
)

PER_SPLIT = {"train": 16, "val": 6, "test": 6}


@pytest.fixture
def stamps(tmp_path, monkeypatch) -> Path:
    """A copy of a few real stamps (PNG + caption file): 16 train, 6 val and 6 test drawings by the loader's split."""
    out, taken = tmp_path / "stamps", dict.fromkeys(PER_SPLIT, 0)
    for txt in sorted(TUXPAINT_DIR.rglob("*.txt")):
        name = txt.relative_to(TUXPAINT_DIR).with_suffix("").as_posix()
        split = split_of(name)
        if not txt.with_suffix(".png").is_file() or taken[split] >= PER_SPLIT[split]:
            continue
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(txt, out / f"{name}.txt")
        shutil.copy(txt.with_suffix(".png"), out / f"{name}.png")
        taken[split] += 1
        if taken == PER_SPLIT:
            break
    monkeypatch.setenv("GENLAB_TUXPAINT", str(out))
    return out


def tiny(**over) -> dict:
    """caption/tuxpaint at 32 x 32 with a tiny CNN and LSTM, 6 steps, an evaluation every 3 (a fixed
    decay: a run stopped early follows the same learning-rate schedule)."""
    base = load_recipe("caption/tuxpaint")
    small = {"model": {"preset": "showtell-tuxpaint", "n_embd": 16, "n_hidden": 24,
                       "image": {"image_size": 32, "widths": [8, 8]}},
             "data": {"image_size": 32, "vocab_size": 200, "max_tokens": 12, "shift": 2},
             "eval": {"beams": 2, "batch_size": 8},
             "train": {"max_steps": 6, "decay_steps": 6, "batch_size": 4, "eval_interval": 3, "log_interval": 1,
                       "warmup_steps": 1, "progress": False, "tensorboard": False}}  # fmt: skip
    return merge(merge(base, small), over)


def genlab(capsys, *args) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    old, sys.argv = sys.argv, ["genlab", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def weights(run_dir: Path) -> dict:
    return load_file(str(find_checkpoint(run_dir / "checkpoints", "last") / "model.safetensors"))


def test_recipes_are_listed():
    assert {"caption/tuxpaint", "caption/scenes"} <= set(list_recipes())


def test_train_writes_a_run_and_resumes_exactly(stamps, tmp_path):
    run_task(tiny(), run_dir=tmp_path / "a")
    run_task(tiny(train={"max_steps": 4}), run_dir=tmp_path / "b")  # stops after an evaluation, mid-epoch
    run_task(tiny(), run_dir=tmp_path / "b", resume=True)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and any(k.startswith("encoder.cnn.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for name in ("config.yaml", "tokenizer.json", "metrics.jsonl", "results.json"):
        assert (tmp_path / "a" / name).is_file(), name
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["steps"] == 6 and results["data_kind"] == "real" and results["test_images"] == 6
    for key in ("val_bleu4", "val_cider", "test_bleu4", "test_cider", "nn_test_bleu4", "nn_test_cider"):
        assert np.isfinite(results[key]) and results[key] >= 0, key
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_cider" in r for r in rows) and any("train_loss" in r for r in rows)
    assert results == {**results, **{k: v for k, v in json.loads((tmp_path / "b" / "results.json").read_text()).items()
                                     if k.startswith(("test_", "nn_", "val_"))}}  # fmt: skip


def test_genlab_eval_and_caption_on_a_run(stamps, tmp_path, capsys):
    run = tmp_path / "run"
    run_task(tiny(train={"max_steps": 3}), run_dir=run)
    capsys.readouterr()
    code, out, err = genlab(capsys, "eval", run, "--beams", "2")
    assert code == 0, err
    out = json.loads(out)
    assert out["task"] == "caption" and out["split"] == "test" and out["beams"] == 2
    assert set(out["model"]) == set(out["nearest_neighbour"]) == {"bleu4", "cider", "images"}
    assert out["data_kind"] == "real" and len(out["examples"]) == 5
    drawing = next(stamps.rglob("*.png"))
    for beam in ("1", "4"):
        code, out, err = genlab(capsys, "caption", run, drawing, "--beam", beam)
        assert code == 0, err
        assert out.startswith(f"{drawing}: ") and len(out.strip().splitlines()) == 1
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((20, 30), 128, dtype=np.uint8), "L").save(gray)
    code, _, err = genlab(capsys, "caption", run, gray)
    assert code == 2 and "has 1 channel but" in err and "images with 3 channels" in err
    assert len(err.strip().splitlines()) == 1


def test_a_model_of_the_wrong_channel_count_for_the_data_is_a_one_line_error(stamps, tmp_path):
    with pytest.raises(ConfigError, match="tuxpaint images have 3 channels but the model takes 1"):
        run_task(tiny(model={"image": {"in_channels": 1}}), run_dir=tmp_path / "r")


def test_read_image_keeps_the_channel_count_and_composites_transparency(tmp_path):
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = read_image(tmp_path / "a.png", 8, background=1.0)
    assert x.shape == (3, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert x[:, 0].mean() == pytest.approx(1.0)  # the padding above the (wide) image is white
    assert x[1:, 4, 1].max() < 0.2 and x[:, 4, 7].min() > 0.9  # red on the left, white where transparent
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), "L").save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png", 8).shape == (1, 8, 8)


def test_the_attention_variant_trains_with_the_doubly_stochastic_penalty(stamps, tmp_path):
    over = {"model": {"preset": "showattend-tuxpaint", "attn_dim": 8}, "attention_reg": 1.0,
            "train": {"max_steps": 2, "eval_interval": 2}}  # fmt: skip
    run_task(tiny(**over), run_dir=tmp_path / "att")
    rows = [json.loads(line) for line in (tmp_path / "att" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "aux_loss" in r]
    assert logged and all(r["aux_loss"] > 0 and r["ce"] == r["train_loss"] for r in logged)
    assert json.loads((tmp_path / "att" / "results.json").read_text())["test_images"] == 6


def test_scenes_recipe_runs_on_grayscale_scenes(tmp_path):
    from genlab.data.images import load_images

    try:
        load_images("fashion-mnist", "test")
    except Exception as exc:
        pytest.skip(f"Fashion-MNIST is not available: {exc}")
    recipe = merge(load_recipe("caption/scenes"), {
        "model": {"n_embd": 16, "n_hidden": 24, "image": {"widths": [8, 8, 8]}},
        "data": {"limit": 8, "max_tokens": 36}, "eval": {"beams": 2},
        "train": {"max_steps": 2, "batch_size": 4, "eval_interval": 2, "progress": False, "tensorboard": False},
    })  # fmt: skip
    run_task(recipe, run_dir=tmp_path / "scenes")
    results = json.loads((tmp_path / "scenes" / "results.json").read_text())
    assert results["data_kind"] == "generated" and results["test_images"] == 8
