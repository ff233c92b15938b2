"""``genlab pipeline chat``: the ChatGPT pipeline in one command, under one time budget.

    pretrain (chat/pretrain: the chat-pretrain mixture, a BPE with the role tokens)
      -> sft     (chat/sft:    FAQ, glossary, perlfaq, Debian FAQ, chatterbot + checkable questions)
      -> reward  (chat/reward: faq-preferences + checker preferences on the SFT model's own samples)
      -> dpo     (chat/dpo from SFT, the same preferences)
      -> grpo    (chat/grpo from SFT, verifiable rewards on the checkable questions)
      -> ppo     (chat/ppo from SFT, scored by the reward model)
      -> the table (pipeline.json) and the temperature sweep (chat_temperature.png)

Each stage is an ordinary run directory under ``--out`` (``genlab chat DIR/sft`` opens it). The
budget is split across the stages by fixed shares (:data:`SHARES`, config data): a stage's
``train.max_steps`` is its step count for the reference budget scaled by budget / reference, and
its ``train.max_minutes`` is its share of the budget. Rerunning the command skips the stages that
finished (``results.json``) and resumes an interrupted one exactly (its last checkpoint); the data
files and the table are rebuilt only when missing.

Data kinds: the conversations and FAQ preferences are real; the checkable questions are templated
(elements, word translations, FOLDOC headwords); checker preferences are programmatic. The table is
on the test split (by source item), the stages tune on the validation split.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from genlab.alignment import evaluate as E
from genlab.core.config import from_dict, load_yaml, merge
from genlab.core.errors import ConfigError
from genlab.data.chat import checker_preferences, qa_conversations, reward, write_jsonl
from genlab.data.sources import load_chat, read_text
from genlab.recipes import load_recipe, run_task
from genlab.recipes.runner import RESULTS_FILE
from genlab.runs import load_run
from genlab.tokenizers.chat import find_template

STAGES = ("pretrain", "sft", "reward", "dpo", "grpo", "ppo")
RECIPES = {s: f"chat/{s}" for s in STAGES}
#: The share of the budget each stage trains for; "eval" is what is left for data and the table.
SHARES = {"pretrain": 0.34, "sft": 0.2, "reward": 0.08, "dpo": 0.08, "grpo": 0.1, "ppo": 0.1, "eval": 0.1}
FAQ_SOURCES = ("python-faq", "python-glossary", "perlfaq", "debian-faq")
SFT_SOURCES = (*FAQ_SOURCES, "chatterbot")
TABLE_FILE = "pipeline.json"
PLOT_FILE = "chat_temperature.png"
#: Rows of the table: (name, stage run) in the issue's order.
ROWS = (("pretrained", "pretrain"), ("SFT", "sft"), ("+PPO", "ppo"), ("+DPO", "dpo"), ("+GRPO", "grpo"))

#: Each stage's overrides of its recipe for the reference budget: 60 minutes of a 2-core CPU shared
#: with other work (chat/pretrain's 4 x 192 model at about 4 s a step of 4,096 tokens).
STAGE_DEFAULTS: dict[str, dict] = {
    "pretrain": {"train": {"max_steps": 290, "eval_interval": 100}},
    "sft": {"train": {"max_steps": 290, "batch_size": 8, "lr": 5.0e-4, "min_lr": 5.0e-5, "eval_interval": 100}},
    "reward": {"train": {"max_steps": 70, "lr": 1.0e-4, "min_lr": 1.0e-5, "eval_interval": 35}},
    "dpo": {"beta": 0.1, "train": {"max_steps": 60, "lr": 3.0e-5, "min_lr": 3.0e-6, "eval_interval": 30}},
    "grpo": {"rollout": {"group_size": 8, "max_new_tokens": 16},
             "train": {"max_steps": 70, "batch_size": 4, "lr": 3.0e-5, "min_lr": 3.0e-6, "eval_interval": 35,
                       "eval_batches": 1}},
    "ppo": {"rollout": {"group_size": 4, "max_new_tokens": 16},
            "train": {"max_steps": 70, "batch_size": 4, "lr": 3.0e-5, "min_lr": 3.0e-6, "eval_interval": 35,
                      "eval_batches": 1}},
}  # fmt: skip


@dataclass
class PipelineConfig:
    shares: dict = field(default_factory=lambda: dict(SHARES))
    reference_minutes: float = 60.0  # the budget the stages' step counts are sized for
    min_stage_minutes: float = 1.0  # a stage given less than this: the budget is too small
    stages: dict = field(default_factory=dict)  # stage -> overrides of its recipe (over STAGE_DEFAULTS)
    pretrain_chars: int = 0  # 0: the whole chat-pretrain mixture; else its first N characters
    sft_per_source: int = 0  # 0: every train conversation; else the first N of each source
    sft_questions: int = 1500  # train checkable questions the SFT data holds as conversations
    rl_questions: int = 0  # train checkable questions GRPO / PPO draw from (0: all)
    val_questions: int = 32  # validation questions the RL stages evaluate on
    faq_pairs: int = 0  # train faq-preferences pairs for the reward model and DPO (0: all)
    checker_questions: int = 256  # train questions the SFT model samples for checker preferences
    checker_samples: int = 4
    eval_questions: int = 0  # test checkable questions in the table (0: all)
    eval_faq: int = 0  # test FAQ conversations in the table (0: all)
    max_new_tokens: int = 32
    temperatures: list = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    temperature_prompts: int = 40
    temperature_samples: int = 4
    seed: int = 0


#: The tiny configuration for tests: a 1-layer model on a slice of the mixture, a few steps a stage.
TINY = {
    "reference_minutes": 1.0,
    "min_stage_minutes": 0.0,
    "pretrain_chars": 60_000,
    "sft_per_source": 6,
    "sft_questions": 24,
    "rl_questions": 16,
    "val_questions": 4,
    "faq_pairs": 8,
    "checker_questions": 6,
    "checker_samples": 2,
    "eval_questions": 8,
    "eval_faq": 4,
    "max_new_tokens": 6,
    "temperatures": [0.0, 1.0],
    "temperature_prompts": 3,
    "temperature_samples": 2,
    "stages": {
        s: {"train": {"max_steps": 2, "batch_size": 2, "eval_interval": 2, "eval_batches": 1, "warmup_steps": 1,
                      "progress": False, "tensorboard": False, "log_interval": 1}}
        for s in STAGES
    }
    | {"pretrain": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 128},
                    "data": {"vocab_size": 320, "val_fraction": 0.1},
                    "sample": {"num_samples": 0},
                    "train": {"max_steps": 3, "batch_size": 2, "eval_interval": 3, "eval_batches": 1,
                              "warmup_steps": 1, "progress": False, "tensorboard": False, "log_interval": 1}}},
}  # fmt: skip


def parse_budget(text: str) -> float:
    """'60m', '90s', '1.5h' or a plain number of minutes -> minutes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise ConfigError(f"budget '{text}' is not a duration: write e.g. 60m, 90s or 1.5h")
    value, unit = float(m[1]), m[2] or "m"
    return value * {"s": 1 / 60, "m": 1.0, "h": 60.0}[unit]


def load_config(path: str | Path | None = None, tiny: bool = False, overrides: dict | None = None) -> PipelineConfig:
    """The default configuration, the tiny one, or a YAML file, then ``overrides`` (a nested dict)."""
    base = merge(TINY, {}) if tiny else {}
    if path is not None:
        base = merge(base, load_yaml(path))
    return from_dict(PipelineConfig, merge(base, overrides or {}))


def minimum_budget(cfg: PipelineConfig) -> float:
    """The smallest budget (minutes) that gives every stage ``min_stage_minutes``."""
    return max(cfg.min_stage_minutes / cfg.shares[s] for s in STAGES)


def plan(cfg: PipelineConfig, budget: float) -> dict[str, dict]:
    """stage -> {"max_steps", "max_minutes"} for a budget in minutes (ConfigError when too small)."""
    unknown = sorted(set(cfg.shares) - {*STAGES, "eval"})
    if unknown or any(s not in cfg.shares or cfg.shares[s] <= 0 for s in STAGES):
        raise ConfigError(f"shares need a positive share for each of {list(STAGES)} (and optionally 'eval')")
    need = minimum_budget(cfg)
    if budget < need:
        raise ConfigError(
            f"a budget of {budget:g} min is too small for the chat pipeline: it needs at least {need:g} min"
        )
    out = {}
    for s in STAGES:
        steps = _stage_overrides(cfg, s)["train"]["max_steps"]
        scaled = max(1, int(round(steps * budget / cfg.reference_minutes)))
        out[s] = {"max_steps": scaled, "max_minutes": cfg.shares[s] * budget}
    return out


def _stage_overrides(cfg: PipelineConfig, stage: str) -> dict:
    return merge(merge({"train": {}}, STAGE_DEFAULTS.get(stage, {})), cfg.stages.get(stage, {}))


# --- data ------------------------------------------------------------------------------------


def _split(rows: list[dict], split: str) -> list[dict]:
    return [r for r in rows if r.get("split") == split]


def _first_per_source(rows: list[dict], n: int) -> list[dict]:
    if not n:
        return rows
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        if seen.get(r["source"], 0) < n:
            seen[r["source"]] = seen.get(r["source"], 0) + 1
            out.append(r)
    return out


def _spread(rows: list[dict], n: int) -> list[dict]:
    """``n`` rows spread evenly over ``rows`` (every source of a sorted list), all when n is 0."""
    if not n or n >= len(rows):
        return rows
    return [rows[int(i * len(rows) / n)] for i in range(n)]


def _with_val(path: Path, train: list[dict], val: list[dict]) -> float:
    """Write train rows then validation rows; returns the stage's val_fraction."""
    write_jsonl(path, train + val)
    return len(val) / (len(train) + len(val))


class Data:
    """The pipeline's data: by default read once from the named sources (see the module docstring);
    tests pass rows of the same form (each with ``source`` and ``split``) and a pretraining text."""

    def __init__(self, cfg: PipelineConfig, conversations=None, questions=None, faq_prefs=None, pretrain_text=None):
        self.cfg = cfg
        self.conversations = (
            conversations if conversations is not None else [r for s in SFT_SOURCES for r in load_chat(s)]
        )
        self.questions = questions if questions is not None else load_chat("chat-questions")
        self.faq_prefs = faq_prefs if faq_prefs is not None else load_chat("faq-preferences")
        self.pretrain_text = pretrain_text  # None: the chat-pretrain mixture

    def pretrain_source(self, files: Path) -> str | None:
        """A text file of the pretraining text when it is not the whole mixture (None when it is)."""
        if self.pretrain_text is None and not self.cfg.pretrain_chars:
            return None
        path = files / "pretrain.txt"
        if not path.is_file():
            text = self.pretrain_text if self.pretrain_text is not None else read_text("chat-pretrain")
            path.write_text(text[: self.cfg.pretrain_chars or None], encoding="utf-8")
        return str(path)

    def faq_test(self) -> list[dict]:
        rows = [r for r in _split(self.conversations, "test") if r["source"] in FAQ_SOURCES]
        return _spread(rows, self.cfg.eval_faq)

    def questions_of(self, split: str, n: int) -> list[dict]:
        return _spread(_split(self.questions, split), n)


def _sft_file(data: Data, path: Path) -> float:
    c = data.cfg
    rows = {
        sp: _first_per_source(_split(data.conversations, sp), c.sft_per_source)
        + qa_conversations(data.questions_of(sp, c.sft_questions if sp == "train" else max(1, c.sft_questions // 10)))
        for sp in ("train", "validation")
    }
    return _with_val(path, rows["train"], rows["validation"])


def _questions_file(data: Data, path: Path) -> float:
    return _with_val(path, data.questions_of("train", data.cfg.rl_questions),
                     data.questions_of("validation", data.cfg.val_questions))  # fmt: skip


def sample_checker_preferences(run_dir: Path, questions: list[dict], cfg: PipelineConfig) -> list[dict]:
    """Checker preferences from a chat run's own samples (temperature 1) on ``questions``."""
    model, tok, _ = load_run(run_dir)
    template = find_template(run_dir, tok)
    samples = E.answers(model, tok, template, questions, cfg.max_new_tokens, temperature=1.0,
                        n=cfg.checker_samples, seed=cfg.seed)  # fmt: skip
    return [p for q, s in zip(questions, samples) for p in checker_preferences(q, s)]


def _preferences_file(data: Data, sft: Path, path: Path) -> float:
    c = data.cfg
    faq = lambda split, n: _spread(_split(data.faq_prefs, split), n)
    train = faq("train", c.faq_pairs) + sample_checker_preferences(
        sft, data.questions_of("train", c.checker_questions), c
    )
    n_val = max(1, c.checker_questions // 8)
    val = faq("validation", c.faq_pairs // 8 if c.faq_pairs else 0) + sample_checker_preferences(
        sft, data.questions_of("validation", n_val), c
    )
    return _with_val(path, train, val)


# --- stages ------------------------------------------------------------------------------------


def _log(text: str) -> None:
    print(f"[pipeline] {text}", flush=True)


def stage_state(run_dir: Path) -> str:
    """'done' (results.json), 'interrupted' (a run without results) or 'new'."""
    if (run_dir / RESULTS_FILE).is_file():
        return "done"
    if (run_dir / "config.yaml").is_file():
        return "interrupted"
    return "new"


def _recipe(cfg: PipelineConfig, stage: str, out: Path, budget_plan: dict, extra: dict) -> dict:
    recipe = merge(load_recipe(RECIPES[stage]), _stage_overrides(cfg, stage))
    recipe = merge(recipe, extra)
    return merge(recipe, {"train": {**budget_plan[stage], "seed": recipe["train"].get("seed", 1337) + cfg.seed}})


def _run_stage(n: int, stage: str, out: Path, make_recipe) -> dict:
    run_dir = out / stage
    state = stage_state(run_dir)
    if state == "done":
        _log(f"{n}/{len(STAGES)} {stage}: finished earlier, skipped ({run_dir})")
        return json.loads((run_dir / RESULTS_FILE).read_text())
    recipe = make_recipe()
    if state == "interrupted":
        recipe = load_yaml(run_dir / "config.yaml")  # the run's own config: an exact resume
    t = recipe["train"]
    _log(f"{n}/{len(STAGES)} {stage}: {'resuming' if state == 'interrupted' else 'training'} up to "
         f"{t['max_steps']} steps or {t['max_minutes']:.1f} min -> {run_dir}")  # fmt: skip
    t0 = time.perf_counter()
    run_task(recipe, run_dir=run_dir, resume=state == "interrupted")
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    best = {k: round(v, 4) for k, v in results.items() if k.startswith("best_") and isinstance(v, float)}
    _log(f"{n}/{len(STAGES)} {stage}: done, {results['steps']} steps in {time.perf_counter() - t0:.0f}s {best}")
    return results


def run_pipeline(out: str | Path, budget: float, cfg: PipelineConfig | None = None, data: Data | None = None) -> dict:
    """Run (or resume) every stage into ``out``, then write and print the table; returns it."""
    cfg = cfg or PipelineConfig()
    out = Path(out)
    budget_plan = plan(cfg, budget)
    t0 = time.perf_counter()
    _log(f"budget {budget:g} min -> " + ", ".join(f"{s} {p['max_minutes']:.1f} min" for s, p in budget_plan.items()))
    data = data or Data(cfg)
    files = out / "data"
    files.mkdir(parents=True, exist_ok=True)

    def pretrain():
        source = data.pretrain_source(files)
        return _recipe(cfg, "pretrain", out, budget_plan, {"data": {"source": source}} if source else {})

    def stage(name: str, init: str, path: Path, make_file, **extra):
        def make():
            fraction = make_file(path)
            where = {"init": str(out / init), "data": {"path": str(path), "val_fraction": fraction}}
            return _recipe(cfg, name, out, budget_plan, {**where, **extra})

        return make

    results = {"pretrain": _run_stage(1, "pretrain", out, pretrain)}
    results["sft"] = _run_stage(2, "sft", out, stage("sft", "pretrain", files / "sft.jsonl",
                                                     lambda p: _sft_file(data, p)))  # fmt: skip
    prefs = files / "preferences.jsonl"
    questions = files / "questions.jsonl"
    make_prefs = lambda p: _preferences_file(data, out / "sft", p)
    results["reward"] = _run_stage(3, "reward", out, stage("reward", "sft", prefs, make_prefs))
    results["dpo"] = _run_stage(4, "dpo", out, stage("dpo", "sft", prefs, make_prefs))
    results["grpo"] = _run_stage(5, "grpo", out, stage("grpo", "sft", questions, lambda p: _questions_file(data, p)))
    results["ppo"] = _run_stage(6, "ppo", out, stage("ppo", "sft", questions, lambda p: _questions_file(data, p),
                                                     reward=str(out / "reward")))  # fmt: skip
    table_path = out / TABLE_FILE
    if table_path.is_file():
        table = json.loads(table_path.read_text())
    else:
        _log("evaluating every stage on the test split ...")
        table = evaluate_pipeline(out, data, cfg)
        table["budget_minutes"] = budget
        table["stages"] = {s: {k: results[s].get(k) for k in ("steps", "train_seconds")} for s in STAGES}
        table["pipeline_seconds"] = time.perf_counter() - t0
        table_path.write_text(json.dumps(table, indent=1))
        plot_temperature(table["temperature"], out / PLOT_FILE)
    print(format_table(table))
    return table


# --- the table -----------------------------------------------------------------------------------


def evaluate_pipeline(out: Path, data: Data, cfg: PipelineConfig) -> dict:
    """pipeline.json's figures: one row per stage, the reward model's accuracy, the temperature sweep."""
    questions = data.questions_of("test", cfg.eval_questions)
    faq = data.faq_test()
    faq_prompts = [{"prompt": c["messages"][0]["content"]} for c in faq if c["messages"][0]["role"] == "user"]
    scorer, rm_tok, _ = load_run(out / "reward")
    sft_model, sft_tok, _ = load_run(out / "sft")
    runs = {}
    for name, stage in ROWS:
        model, tok, _ = load_run(out / stage)
        template = find_template(out / stage, tok)
        q_replies = [a[0] for a in E.answers(model, tok, template, questions, cfg.max_new_tokens)]
        f_replies = [a[0] for a in E.answers(model, tok, template, faq_prompts, cfg.max_new_tokens)]
        runs[name] = (model, tok, template, q_replies, f_replies)
    rows = []
    prompts = questions + faq_prompts
    base = runs["SFT"]
    rm_template = find_template(out / "reward", rm_tok)
    base_rm = E.reward_scores(scorer, rm_tok, rm_template, prompts, base[3] + base[4])
    base_check = [reward(q, a) for q, a in zip(questions, base[3])]
    for name, stage in ROWS:
        model, tok, template, q_replies, f_replies = runs[name]
        rm = E.reward_scores(scorer, rm_tok, rm_template, prompts, q_replies + f_replies)
        check = [reward(q, a) for q, a in zip(questions, q_replies)]
        row = {
            "stage": name,
            "run": stage,
            "faq_perplexity": E.answer_perplexity(model, tok, template, faq, model.config.block_size),
            **E.checker_rates(questions, q_replies),
            "reward_model_score": sum(rm) / len(rm),
            "kl_to_sft": E.kl_per_answer(model, sft_model, tok, template, prompts, q_replies + f_replies)
            if tok.fingerprint() == sft_tok.fingerprint()
            else math.nan,
            "win_rate_vs_sft_reward_model": E.win_rate(rm, base_rm),
            "win_rate_vs_sft_checker": E.win_rate(check, base_check),
            "examples": [
                {"prompt": q["prompt"], "answer": q["answer"], "reply": a}
                for q, a in list(zip(questions, q_replies))[:5]
            ],  # fmt: skip
        }
        rows.append(row)
    held_out = _split(data.faq_prefs, "test") + sample_checker_preferences(
        out / "sft", data.questions_of("test", max(1, cfg.checker_questions // 4)), cfg
    )
    reward_accuracy = E.pairwise_accuracy_by_source(scorer, rm_tok, rm_template, held_out)
    return {
        "rows": rows,
        "reward_model_pairwise_accuracy": reward_accuracy,
        "temperature": temperature_sweep(out / "sft", questions, faq_prompts, cfg),
        "held_out": {"questions": len(questions), "faq_conversations": len(faq), "faq_prompts": len(faq_prompts)},
        "data_kinds": {"faq": "real (test split of python-faq, python-glossary, perlfaq, debian-faq)",
                       "questions": "templated (test split of chat-questions)",
                       "preferences": "programmatic (faq-preferences; checker pairs on the SFT model's samples)"},
    }  # fmt: skip


def temperature_sweep(run_dir: Path, questions: list[dict], faq_prompts: list[dict], cfg: PipelineConfig) -> list[dict]:
    """Accuracy (one sample per test question) and diversity (distinct-2, self-BLEU of
    ``temperature_samples`` samples of ``temperature_prompts`` prompts) against temperature."""
    model, tok, _ = load_run(run_dir)
    template = find_template(run_dir, tok)
    prompts = _spread(questions, cfg.temperature_prompts // 2) + _spread(faq_prompts, cfg.temperature_prompts // 2)
    out = []
    for t in cfg.temperatures:
        replies = [a[0] for a in E.answers(model, tok, template, questions, cfg.max_new_tokens, t, seed=cfg.seed)]
        n = 1 if t == 0 else cfg.temperature_samples  # greedy samples are all the same
        groups = E.answers(model, tok, template, prompts, cfg.max_new_tokens, t, n=n, seed=cfg.seed + 1)
        if t == 0:
            groups = [g * cfg.temperature_samples for g in groups]
        diversity = {"distinct_2": E.distinct_n([x for g in groups for x in g], 2), "self_bleu": E.self_bleu(groups)}
        out.append({"temperature": t, **E.checker_rates(questions, replies), **diversity})
    return out


def plot_temperature(sweep: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy and distinct-2 (left axis) and self-BLEU / 100 against temperature, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [r["temperature"] for r in sweep]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(ts, [r["accuracy"] for r in sweep], "o-", label="accuracy (checkable questions)")
    ax.plot(ts, [r["distinct_2"] for r in sweep], "s-", label="distinct-2")
    ax.plot(ts, [r["self_bleu"] / 100 for r in sweep], "^-", label="self-BLEU / 100")
    ax.set_xlabel("temperature")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "chat model: accuracy and diversity against temperature", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


COLUMNS = (
    ("stage", "stage", "{}"),
    ("faq_perplexity", "FAQ ppl", "{:.1f}"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("confident_wrong", "conf. wrong", "{:.3f}"),
    ("abstention", "abstain", "{:.3f}"),
    ("reward_model_score", "RM score", "{:+.3f}"),
    ("kl_to_sft", "KL to SFT", "{:.3f}"),
    ("win_rate_vs_sft_reward_model", "win vs SFT (RM)", "{:.3f}"),
    ("win_rate_vs_sft_checker", "win vs SFT (checker)", "{:.3f}"),
)


def format_table(table: dict) -> str:
    """The table as Markdown: the stages, the reward model's accuracy per source, the temperature sweep."""
    lines = ["| " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table["rows"]:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    lines += ["", "| reward model: held-out pairs | pairs | pairwise accuracy |", "|---|---|---|"]
    for source, r in table["reward_model_pairwise_accuracy"].items():
        lines.append(f"| {source} | {r['pairs']} | {r['accuracy']:.3f} |")
    lines += [
        "",
        "| temperature | accuracy | conf. wrong | abstain | distinct-2 | self-BLEU |",
        "|---|---|---|---|---|---|",
    ]
    for r in table["temperature"]:
        lines.append(f"| {r['temperature']:g} | {r['accuracy']:.3f} | {r['confident_wrong']:.3f} | "
                     f"{r['abstention']:.3f} | {r['distinct_2']:.3f} | {r['self_bleu']:.1f} |")  # fmt: skip
    return "\n".join(lines)


__all__ = [
    "SHARES",
    "STAGES",
    "TINY",
    "Data",
    "PipelineConfig",
    "format_table",
    "load_config",
    "minimum_budget",
    "parse_budget",
    "plan",
    "plot_temperature",
    "run_pipeline",
]
