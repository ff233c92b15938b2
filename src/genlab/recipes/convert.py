"""Convert between Hugging Face model folders and genlab run directories.

    genlab convert hf-to-genlab HF_DIR OUT     config.json + weights + tokenizer  ->  run directory
    genlab convert genlab-to-hf RUN_DIR OUT    run directory  ->  config.json + model.safetensors + tokenizer

GPT runs become GPT-2 folders; bert runs (every encoder task) become BERT / RoBERTa / ALBERT /
ELECTRA / DistilBERT folders, as their config allows (:mod:`genlab.models.convert.bert`).
The tensor and config maps are pure functions in :mod:`genlab.models.convert.gpt2`; this
module handles the files around them: the tokenizer, ``config.yaml`` (the resolved recipe
:func:`genlab.runs.load_run` reads), the checkpoint pointers, and refusing to clobber
an existing directory. Output is written to a temporary sibling and renamed into place, so
a failed conversion leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.config import save_yaml, to_dict
from genlab.core.errors import ConfigError, RunDirError, TokenizerError
from genlab.models.bert import BertConfig
from genlab.models.convert import gpt2
from genlab.models.gpt import GPT, GPTConfig
from genlab.runs import load_run, read_run_config
from genlab.runs.encoders import load_encoder
from genlab.tokenizers import EOS_TOKEN, TOKENIZER_FILE, BPETokenizer, CharTokenizer
from genlab.tokenizers.chat import find_template, to_jinja
from genlab.training.checkpoint import save_checkpoint


@dataclass
class Converted:
    """What a conversion wrote (the CLI prints it)."""

    out: Path
    config: GPTConfig | BertConfig
    n_params: int
    tokenizer: str  # how the tokenizer was obtained or written
    files: list[str] = field(default_factory=list)


# --- output directories ----------------------------------------------------------------


def _check_out(out_dir: Path, overwrite: bool, marker: str, what: str, source: Path) -> None:
    """Refuse to clobber: a non-empty ``out_dir`` needs ``overwrite`` and must hold ``marker``."""
    out, src = out_dir.resolve(), source.resolve()
    if out == src or out in src.parents:
        raise RunDirError(f"{out_dir} would replace the input {source}: pick another output directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir} exists and is not a directory: pick another output directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise RunDirError(f"{out_dir} is not empty: add --overwrite to replace it, or pick another directory")
        if not (out_dir / marker).is_file():
            raise RunDirError(f"{out_dir} is not empty and holds no {marker} (not {what}): refusing to delete it")


def _write_atomically(out_dir: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary sibling of ``out_dir``, then move it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.convert-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)  # _check_out allowed it: empty, or overwrite of the same kind
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --- Hugging Face -> genlab ------------------------------------------------------------


def hf_tokenizer(hf_dir: Path) -> tuple[BPETokenizer, str]:
    """The tokenizer of a Hugging Face folder: its ``tokenizer.json``, else one built from
    GPT-2's ``vocab.json`` + ``merges.txt`` (byte-level BPE, no prefix space)."""
    path = hf_dir / TOKENIZER_FILE
    if path.is_file():
        return BPETokenizer.from_file(path), f"copied {TOKENIZER_FILE}"
    vocab, merges = hf_dir / "vocab.json", hf_dir / "merges.txt"
    if vocab.is_file() and merges.is_file():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        try:
            tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        except Exception as e:  # the Rust side raises plain exceptions
            raise TokenizerError(f"cannot build a BPE tokenizer from {vocab} + {merges}: {e}") from e
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if tok.token_to_id(EOS_TOKEN) is not None:
            tok.add_special_tokens([EOS_TOKEN])  # matched whole in text, as GPT-2's tokenizer does
        return BPETokenizer(tok), "built from vocab.json + merges.txt"
    raise TokenizerError(
        f"{hf_dir} has no tokenizer: expected {TOKENIZER_FILE}, or vocab.json + merges.txt "
        f"(missing: {', '.join(p.name for p in (path, vocab, merges) if not p.is_file())})"
    )


def converted_recipe(cfg: GPTConfig, tok: BPETokenizer) -> dict:
    """The recipe ``config.yaml`` holds: an ``lm`` run with the model by family and every field and
    its BPE tokenizer (the lm recipe's defaults fill in the rest when it is read)."""
    return {"task": "lm", "model": {"family": "gpt", **to_dict(cfg)},
            "data": {"tokenizer": "bpe", "vocab_size": tok.vocab_size}}  # fmt: skip


def hf_to_genlab(hf_dir: Path, out_dir: Path, overwrite: bool = False) -> Converted:
    """A Hugging Face GPT-2 folder -> a genlab run directory that ``genlab sample`` reads."""
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    raw = gpt2.read_hf_config(hf_dir)
    cfg = gpt2.hf_config_to_genlab(raw, where=str(hf_dir / gpt2.CONFIG_FILE))  # refuse before reading weights
    tok, how = hf_tokenizer(hf_dir)
    if tok.vocab_size != cfg.vocab_size:
        raise ConfigError(
            f"{hf_dir}: the model has {cfg.vocab_size} tokens but the tokenizer {tok.vocab_size}; "
            "a genlab run needs them equal"
        )
    _check_out(out_dir, overwrite, "config.yaml", "a genlab run", hf_dir)
    model = gpt2.gpt_from_hf_state(gpt2.read_hf_weights(hf_dir), cfg, where=str(hf_dir))

    def write(tmp: Path) -> None:
        tok.save(tmp)
        save_yaml(converted_recipe(cfg, tok), tmp / "config.yaml")
        save_checkpoint(tmp / "checkpoints", 0, {"model": model}, {}, ("last", "best"), {"converted_from": str(hf_dir)})

    _write_atomically(out_dir, write)
    files = ["config.yaml", TOKENIZER_FILE, "checkpoints/"]
    return Converted(out_dir, cfg, model.num_params(), how, files)


# --- genlab -> Hugging Face ------------------------------------------------------------


def char_tokenizer_json(tok: CharTokenizer) -> str:
    """A Hugging Face ``tokenizer.json`` equal to a genlab character tokenizer: one token per
    character (WordLevel over single-character splits), decoded by concatenation."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    hf = Tokenizer(models.WordLevel({c: i for i, c in enumerate(tok.chars)}, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()
    return hf.to_str(pretty=True)


def _write_tokenizer(tok, cfg: GPTConfig, out: Path) -> str:
    """tokenizer.json + tokenizer_config.json so that ``AutoTokenizer.from_pretrained`` loads it."""
    settings: dict = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": cfg.block_size,
        "clean_up_tokenization_spaces": False,
    }
    if isinstance(tok, BPETokenizer):
        tok.save(out)
        if tok.eos_id is not None:
            settings.update(bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN)
        how = f"{TOKENIZER_FILE} (byte-level BPE, {tok.vocab_size} tokens)"
    elif isinstance(tok, CharTokenizer):
        (out / TOKENIZER_FILE).write_text(char_tokenizer_json(tok) + "\n", encoding="utf-8")
        how = f"{TOKENIZER_FILE} (characters as a WordLevel tokenizer, {tok.vocab_size} tokens)"
    else:  # pragma: no cover - load_tokenizer returns one of the two
        raise TokenizerError(f"cannot export a {type(tok).__name__} to Hugging Face")
    (out / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return how


def genlab_to_hf(run_dir: Path, out_dir: Path, overwrite: bool = False, which: str = "best") -> Converted:
    """A genlab GPT run -> a Hugging Face GPT-2 folder (``AutoModelForCausalLM.from_pretrained``);
    a bert run -> the Hugging Face folder of its architecture (``AutoModel.from_pretrained``)."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if (run_dir / "config.yaml").is_file() and (read_run_config(run_dir).get("model") or {}).get("family") == "bert":
        return _bert_to_hf(run_dir, out_dir, overwrite, which)
    model, tok, _ = load_run(run_dir, which)
    if not isinstance(model, GPT):
        raise ConfigError(f"{run_dir} holds a {type(model).__name__}; only GPT runs convert to GPT-2")
    cfg = model.config
    hf_cfg = gpt2.genlab_config_to_hf(cfg, eos_id=tok.eos_id)  # refuses what GPT-2 cannot express
    _check_out(out_dir, overwrite, gpt2.CONFIG_FILE, "a Hugging Face model folder", run_dir)
    how = ""

    def write(tmp: Path) -> None:
        nonlocal how
        gpt2.write_hf_gpt2(model, tmp, eos_id=tok.eos_id)
        how = _write_tokenizer(tok, cfg, tmp)
        template = find_template(run_dir, tok)
        if template is not None:  # the run's chat template, as transformers' apply_chat_template reads it
            settings = json.loads((tmp / "tokenizer_config.json").read_text(encoding="utf-8"))
            settings["chat_template"] = to_jinja(template)
            (tmp / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
            how += " + chat template"
        generation = {"bos_token_id": hf_cfg["bos_token_id"], "eos_token_id": hf_cfg["eos_token_id"]}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")

    _write_atomically(out_dir, write)
    files = [gpt2.CONFIG_FILE, gpt2.WEIGHTS_FILE, TOKENIZER_FILE, "tokenizer_config.json", "generation_config.json"]
    return Converted(out_dir, cfg, model.num_params(), how, files)


def _bert_to_hf(run_dir: Path, out_dir: Path, overwrite: bool, which: str) -> Converted:
    from genlab.models.convert import bert as bert_convert
    from genlab.tokenizers.wordpiece import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN

    enc = load_encoder(run_dir, which)
    model, tok = enc.model, enc.tokenizer
    hf_cfg = bert_convert.genlab_config_to_hf(model.config)  # refuses what no architecture expresses
    _check_out(out_dir, overwrite, gpt2.CONFIG_FILE, "a Hugging Face model folder", run_dir)
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model.config.block_size,
                "cls_token": CLS_TOKEN, "sep_token": SEP_TOKEN, "pad_token": PAD_TOKEN, "mask_token": MASK_TOKEN,
                "unk_token": UNK_TOKEN}  # fmt: skip
    if model.config.type_vocab_size:  # the tokenizer also returns the segment ids the model reads
        settings["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]

    def write(tmp: Path) -> None:
        bert_convert.write_hf_bert(model, tmp)
        tok.save(tmp)
        (tmp / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    _write_atomically(out_dir, write)
    files = [gpt2.CONFIG_FILE, gpt2.WEIGHTS_FILE, TOKENIZER_FILE, "tokenizer_config.json"]
    return Converted(out_dir, model.config, model.num_params(), f"WordPiece ({hf_cfg['model_type']})", files)
