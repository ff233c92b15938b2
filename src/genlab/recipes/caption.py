"""Image captioning: ``caption`` trains Show & Tell (or Show, Attend and Tell) on captioned images.

Data (``data.source``):

- ``tuxpaint``: Tux Paint's drawings (real, human-written captions, English or French by
  ``data.language``; :func:`genlab.data.captions.load_tuxpaint`, split by stamp group into about
  650 / 65 / 70 drawings). Tiny and diverse: a held-out drawing is mostly an object never seen in
  training, so expect low scores; the nearest-neighbour baseline is the bar.
- ``scenes``: Fashion-MNIST scenes (generated: real Fashion-MNIST items on a canvas, templated
  captions of what and where; :func:`genlab.data.scenes.make_scenes`).

One word-level tokenizer (:func:`word_tokenizer`: BERT's normaliser, [CLS] starts a caption,
[SEP] ends it) is built from the training captions and saved with the run.
The model (:mod:`genlab.models.showtell`) reads the image and is
teacher-forced on the caption: loss = token-mean cross-entropy (+ ``attention_reg`` x the doubly
stochastic attention penalty for the attend decoder). Training images may be shifted by up to
``data.shift`` pixels and flipped left-right (``data.flip``; never for the scenes, whose captions
say left and right).

Each evaluation computes the validation loss and greedy-decodes the validation images:
``val_bleu4`` and ``val_cider`` (:mod:`genlab.eval.captioning`); the recipes keep the best
checkpoint by ``val_cider``. At the end the best checkpoint captions the test images with beam
search (``eval.beams``), beside the nearest-neighbour baseline (the caption of the closest training
image by cosine similarity of the run's own trained encoder's pooled features): results.json, and
``genlab eval RUN`` again. ``genlab caption RUN IMAGE.png`` captions a file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.config import from_dict, merge, to_dict
from genlab.core.errors import ConfigError, DataError
from genlab.data.batches import ShuffledBatches
from genlab.data.images import augment
from genlab.eval.captioning import caption_metrics, nearest_neighbour_captions
from genlab.generation.decode import GenerationConfig, generate
from genlab.models import build_model, family_of
from genlab.models.showtell import ShowTellConfig, attention_penalty
from genlab.recipes import runner
from genlab.runs import load_run, model_config, read_run_config
from genlab.tokenizers import WordPieceTokenizer, load_tokenizer
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw
from genlab.training.runtime import unwrap

SOURCES = {"tuxpaint": "real", "scenes": "generated"}  # source -> data kind
LANGUAGES = ("en", "fr")
IGNORE = -100


# --- Config ---------------------------------------------------------------------------


@dataclass
class CaptionData:
    source: str = "tuxpaint"  # tuxpaint (real) | scenes (generated)
    image_size: int = 64
    language: str = "en"  # tuxpaint: en | fr
    scenes_train: int = 6000  # scenes per split (generated, deterministic in the seed)
    scenes_val: int = 300
    scenes_test: int = 500
    scenes_seed: int = 0
    limit: int = 0  # at most this many training images (0: all); also caps val and test (tests, demos)
    vocab_size: int = 3000  # at most this many ids: the special tokens and the most frequent training words
    min_frequency: int = 1
    max_tokens: int = 24  # [CLS] + caption + [SEP]; longer training captions are cut (references never)
    shift: int = 0  # training augmentation: random translation by up to this many pixels
    flip: bool = False  # training augmentation: random left-right flips


@dataclass
class CaptionEval:
    beams: int = 3  # test captions (validation decodes greedily)
    length_penalty: float = 1.0
    batch_size: int = 64  # images per forward pass when decoding or embedding


@dataclass
class CaptionRecipe:
    task: str = "caption"
    model: dict = field(default_factory=lambda: {"preset": "showtell-tuxpaint"})
    attention_reg: float = 0.0  # lambda of the doubly stochastic attention penalty (attend decoder)
    data: CaptionData = field(default_factory=CaptionData)
    eval: CaptionEval = field(default_factory=CaptionEval)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class CaptionSplit:
    images: torch.Tensor  # float (N, C, S, S) in [0, 1]
    captions: list[str]  # the caption trained on (the first reference)
    references: list[list[str]]  # every reference of each image


# --- Data -----------------------------------------------------------------------------


def check(r: CaptionRecipe) -> None:
    d = r.data
    if d.source not in SOURCES:
        raise ConfigError(f"data.source='{d.source}' is not one of {sorted(SOURCES)}")
    if d.language not in LANGUAGES:
        raise ConfigError(f"data.language='{d.language}' is not one of {list(LANGUAGES)}")
    if d.language != "en" and d.source != "tuxpaint":
        raise ConfigError(f"data.language={d.language} is for tuxpaint; the {d.source} captions are English")
    if d.source == "scenes" and d.image_size != 64:
        raise ConfigError(f"scenes are 64 x 64 canvases: set data.image_size=64 (got {d.image_size})")
    if d.max_tokens < 3:
        raise ConfigError(f"data.max_tokens={d.max_tokens} leaves no room for a word between [CLS] and [SEP]")
    if d.shift < 0 or r.eval.beams < 1:
        raise ConfigError("data.shift must be >= 0 and eval.beams >= 1")


def load_split(d: CaptionData, split: str) -> CaptionSplit:
    """One split of the recipe's source as float images and captions (``data.limit`` applied)."""
    if d.source == "tuxpaint":
        from genlab.data.captions import load_tuxpaint

        items = load_tuxpaint(split, d.image_size)
        if d.language == "fr":
            items = [c for c in items if c.caption_fr]
        caps = [c.caption_fr if d.language == "fr" else c.caption for c in items]
        arr = np.stack([c.image for c in items]).transpose(0, 3, 1, 2) if items else np.zeros((0, 3, 1, 1))
    else:
        from genlab.data.scenes import make_scenes

        n = {"train": d.scenes_train, "val": d.scenes_val, "test": d.scenes_test}[split]
        n = min(n, d.limit) if d.limit else n
        items = make_scenes(split, n, d.scenes_seed)
        caps = [s.caption for s in items]
        arr = np.stack([s.image for s in items])[:, None] if items else np.zeros((0, 1, 1, 1))
    if d.limit:
        arr, caps = arr[: d.limit], caps[: d.limit]
    if not caps:
        raise DataError(f"the {d.source} {split} split is empty: lower data.limit's cut or add data")
    images = torch.from_numpy(np.ascontiguousarray(arr)).float() / 255.0  # (N, C, S, S)
    return CaptionSplit(images, list(caps), [[c] for c in caps])


def word_tokenizer(texts: list[str], vocab_size: int, min_frequency: int = 1) -> WordPieceTokenizer:
    """A word-level WordPiece tokenizer (BERT's normaliser and pre-tokenizer, its special tokens at
    ids 0-4): the words of ``texts`` seen at least ``min_frequency`` times, most frequent first (ties
    alphabetical), up to ``vocab_size`` ids; any other word is [UNK]. Deterministic, unlike the
    WordPiece trainer, whose ties fall differently from run to run (and with them the vocabulary)."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from genlab.tokenizers.wordpiece import CLS_TOKEN, SEP_TOKEN, SPECIAL_TOKENS, UNK_TOKEN

    norm, split = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for t in texts for w, _ in split.pre_tokenize_str(norm.normalize_str(t)))
    words = sorted((w for w, n in counts.items() if n >= min_frequency and w not in SPECIAL_TOKENS),
                   key=lambda w: (-counts[w], w))[: max(0, vocab_size - len(SPECIAL_TOKENS))]  # fmt: skip
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK_TOKEN))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = norm, split, decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # already ids 0-4: marks them special (skipped when decoding)
    ends = [(t, vocab[t]) for t in (CLS_TOKEN, SEP_TOKEN)]
    tok.post_processor = processors.TemplateProcessing(single=f"{CLS_TOKEN}:0 $A:0 {SEP_TOKEN}:0", special_tokens=ends)
    return WordPieceTokenizer(tok)


def encode_captions(tok: WordPieceTokenizer, captions: list[str], max_tokens: int) -> list[list[int]]:
    """[CLS] caption [SEP] token ids, cut to ``max_tokens`` (the cut keeps [SEP] last)."""
    out = []
    for c in captions:
        ids = tok.encode(c, add_special_tokens=True)
        out.append(ids if len(ids) <= max_tokens else ids[: max_tokens - 1] + [tok.sep_id])
    return out


def collate(images: torch.Tensor, ids: list[list[int]], rows, pad: int, shift: int = 0, flip: bool = False,
            fill: float = 1.0) -> dict:  # fmt: skip
    """A batch: images (B, C, S, S), input ids (B, T) = caption[:-1] and labels (B, T) = caption[1:],
    padded (labels with -100). Augmentation draws from the global RNG (a checkpoint restores it)."""
    rows = list(rows)
    x = augment(images[rows], shift, flip, fill)  # (B, C, S, S)
    T = max(len(ids[r]) for r in rows) - 1
    inp = torch.full((len(rows), T), pad, dtype=torch.long)
    labels = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        seq = torch.tensor(ids[r], dtype=torch.long)
        inp[i, : len(seq) - 1], labels[i, : len(seq) - 1] = seq[:-1], seq[1:]
    return {"images": x, "input_ids": inp, "labels": labels}


# --- Loss, decoding, features -----------------------------------------------------------


def caption_loss(model, batch: dict, attention_reg: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Token-mean cross-entropy of teacher forcing (+ lambda x the attention penalty)."""
    out = model(batch["images"], batch["input_ids"])
    loss = F.cross_entropy(out.logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE)
    if out.alphas is None or not attention_reg:
        return loss, {}
    penalty = attention_penalty(out.alphas, batch["labels"] != IGNORE)
    return loss, {"aux_loss": attention_reg * penalty, "ce": loss.detach()}


@torch.no_grad()
def mean_ce(model, images: torch.Tensor, ids: list[list[int]], pad: int, batch_size: int, device) -> float:
    total, n = 0.0, 0
    for i in range(0, len(ids), batch_size):
        b = collate(images, ids, range(i, min(i + batch_size, len(ids))), pad)
        out = model(b["images"].to(device), b["input_ids"].to(device))
        labels = b["labels"].to(device).flatten()
        total += float(F.cross_entropy(out.logits.flatten(0, 1).float(), labels, ignore_index=IGNORE, reduction="sum"))
        n += int((labels != IGNORE).sum())
    return total / max(n, 1)


@torch.no_grad()
def caption_images(model, tok, images: torch.Tensor, beams: int = 1, batch_size: int = 64,
                   length_penalty: float = 1.0, max_new_tokens: int | None = None) -> list[str]:  # fmt: skip
    """One caption per image (N, C, S, S) through the generation engine: greedy, or beam search."""
    model.eval()
    cfg = model.config
    gen = GenerationConfig(max_new_tokens=max_new_tokens or cfg.block_size - 1, temperature=0.0, num_beams=beams,
                           length_penalty=length_penalty, eos_id=cfg.eos_id)  # fmt: skip
    out = []
    for i in range(0, len(images), batch_size):
        for g in generate(model, list(images[i : i + batch_size]), gen):
            out.append(tok.decode(g[0].tokens, skip_special_tokens=True))
    return out


@torch.no_grad()
def image_features(model, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The pooled encoder features (N, F) of the model (in eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model.image_features(images[i : i + batch_size].to(device)).cpu()
                      for i in range(0, len(images), batch_size)])  # fmt: skip


def score_split(model, tok, train: CaptionSplit, split: CaptionSplit, beams: int, batch_size: int = 64,
                length_penalty: float = 1.0) -> dict:  # fmt: skip
    """The model's captions and the nearest-neighbour baseline's on one split: BLEU-4 and CIDEr-D of each."""
    hyps = caption_images(model, tok, split.images, beams, batch_size, length_penalty)
    nn_caps = nearest_neighbour_captions(image_features(model, split.images, batch_size),
                                         image_features(model, train.images, batch_size), train.captions)  # fmt: skip
    examples = [{"reference": split.references[i][0], "model": hyps[i], "nearest_neighbour": nn_caps[i]}
                for i in range(min(5, len(hyps)))]  # fmt: skip
    return {"model": caption_metrics(hyps, split.references),
            "nearest_neighbour": caption_metrics(nn_caps, split.references), "examples": examples}  # fmt: skip


# --- Training ---------------------------------------------------------------------------


def _check_images(d: CaptionData, cfg: ShowTellConfig, images: torch.Tensor) -> None:
    c, s = images.shape[1], images.shape[-1]
    if c != cfg.image.in_channels:
        raise ConfigError(
            f"{d.source} images have {c} channel{'s' if c != 1 else ''} but the model takes "
            f"{cfg.image.in_channels}: set model.image.in_channels={c} (or pick a {d.source} preset)"
        )
    if s != cfg.image.image_size:
        raise ConfigError(f"data.image_size={s} but model.image.image_size={cfg.image.image_size}: make them equal")


def _prepare(r: CaptionRecipe, s: runner.Session) -> runner.Setup:
    rt, t, d, e = s.rt, r.train, r.data, r.eval
    train, val = load_split(d, "train"), load_split(d, "val")
    if s.resume:
        tok = load_tokenizer(s.run_dir)
        cfg = model_config(read_run_config(s.run_dir)["model"])
    else:
        tok = word_tokenizer(train.captions, d.vocab_size, d.min_frequency)
        cfg = model_config(r.model, vocab_size=tok.vocab_size)
        cfg = dataclasses.replace(cfg, block_size=d.max_tokens, pad_id=tok.pad_id, decoder_start_id=tok.cls_id,
                                  eos_id=tok.sep_id)  # fmt: skip
    if not isinstance(cfg, ShowTellConfig):
        raise ConfigError(
            f"a caption recipe trains a showtell model, not a {family_of(cfg)} one: use a showtell preset"
        )
    _check_images(d, cfg, train.images)
    train_ids = encode_captions(tok, train.captions, d.max_tokens)
    val_ids = encode_captions(tok, val.captions, d.max_tokens)
    s.start(merge(to_dict(r), {"model": {"family": family_of(cfg), **to_dict(cfg)}}), tok)
    model = rt.wrap(build_model(cfg))
    fill = 1.0 if d.source == "tuxpaint" else 0.0  # the background: white drawings, black scenes
    make = lambda rows: collate(train.images, train_ids, rows, cfg.pad_id, d.shift, d.flip, fill)
    make_data = lambda: ShuffledBatches(len(train_ids), t.batch_size, make, seed=t.seed, rank=rt.rank,
                                        world_size=rt.world_size)  # fmt: skip
    data = make_data()

    def evaluate(ms):
        m = unwrap(ms["model"])
        hyps = caption_images(m, tok, val.images, 1, e.batch_size)
        scores = caption_metrics(hyps, val.references)
        return {"val_loss": mean_ce(ms["model"], val.images, val_ids, cfg.pad_id, e.batch_size, rt.device),
                "val_bleu4": scores["bleu4"], "val_cider": scores["cider"]}  # fmt: skip

    loss = lambda ms, batch: caption_loss(ms["model"], batch, r.attention_reg)
    trainer = Trainer({"model": model}, {"model": adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))},
                      [Phase(loss)], rt, t, run_dir=s.run_dir, evaluate=evaluate,
                      count=lambda b: len(b["images"]), unit="img")  # fmt: skip

    def finish(trainer: Trainer) -> dict:
        best = load_run(s.run_dir).model.to(rt.device)
        val_greedy = caption_metrics(caption_images(best, tok, val.images, 1, e.batch_size), val.references)
        test = score_split(best, tok, train, load_split(d, "test"), e.beams, e.batch_size, e.length_penalty)
        s.log(f"test (best checkpoint, beam {e.beams}): BLEU-4 {test['model']['bleu4']:.2f} CIDEr-D "
              f"{test['model']['cider']:.3f} | nearest neighbour: BLEU-4 {test['nearest_neighbour']['bleu4']:.2f} "
              f"CIDEr-D {test['nearest_neighbour']['cider']:.3f} ({SOURCES[d.source]} data)")  # fmt: skip
        return {"source": d.source, "data_kind": SOURCES[d.source], "best_" + t.best_metric: trainer.best,
                "val_bleu4": val_greedy["bleu4"], "val_cider": val_greedy["cider"], "test_beams": e.beams,
                "test_bleu4": test["model"]["bleu4"], "test_cider": test["model"]["cider"],
                "nn_test_bleu4": test["nearest_neighbour"]["bleu4"],
                "nn_test_cider": test["nearest_neighbour"]["cider"],
                "test_images": test["model"]["images"], "test_examples": test["examples"]}  # fmt: skip

    with torch.random.fork_rng():  # the reference batch's augmentation draws leave training's RNG alone
        ref = next(make_data())
    describe = (f"{cfg.decoder} on a {cfg.image.kind} encoder | {d.source} ({SOURCES[d.source]}): {len(train_ids):,} "
                f"train / {len(val_ids):,} val images | vocab {tok.vocab_size}")  # fmt: skip
    return runner.Setup(trainer, data, sum(p.numel() for p in unwrap(model).parameters()), describe,
                        runner.flops_per_item(loss, {"model": model}, ref, rt.device, t.batch_size),
                        lambda steps: steps * t.batch_size * t.grad_accum, finish)  # fmt: skip


train = runner.entry_point("caption", CaptionRecipe, _prepare, check=check)


# --- A run back: genlab eval, genlab caption ----------------------------------------------


def evaluate_caption_run(run_dir: str | os.PathLike, which: str = "best", split: str = "test",
                         beams: int | None = None, batch_size: int = 64) -> dict:  # fmt: skip
    """``genlab eval RUN``: BLEU-4 and CIDEr-D of a caption run's captions of ``split`` (beam search)
    beside the nearest-neighbour baseline in the run's encoder's feature space."""
    model, tok, config = load_run(run_dir, which)
    r = from_dict(CaptionRecipe, config)
    beams = beams or r.eval.beams
    out = score_split(model, tok, load_split(r.data, "train"), load_split(r.data, split), beams, batch_size,
                      r.eval.length_penalty)  # fmt: skip
    return {"task": "caption", "source": r.data.source, "data_kind": SOURCES[r.data.source], "split": split,
            "checkpoint": which, "beams": beams, "decoder": model.config.decoder,
            "nearest_neighbour_features": "the run's own image encoder (pooled, cosine similarity)", **out}  # fmt: skip


def read_image(path: str | os.PathLike, size: int, background: float = 1.0) -> torch.Tensor:
    """An image file as a float (C, size, size) tensor in [0, 1]: C is 1 for a grayscale file and 3
    for a colour one (transparency is composited over ``background``); fitted into a centred square."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "F") or (im.mode == "P" and _gray_palette(im))
            im = im.convert("LA" if gray else "RGBA")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read the image {path} ({exc}): give a PNG or JPEG file") from exc
    back = round(255 * background)
    canvas = Image.new(im.mode, im.size, (back, 255) if gray else (back, back, back, 255))
    im = Image.alpha_composite(canvas, im).convert("L" if gray else "RGB")
    side = max(im.size)
    square = Image.new(im.mode, (side, side), back if gray else (back, back, back))
    square.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    arr = np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    return torch.from_numpy(arr[None] if gray else arr.transpose(2, 0, 1).copy())  # (C, S, S)


def _gray_palette(im) -> bool:
    rgb = np.asarray(im.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def caption_files(run_dir: str | os.PathLike, paths: list[Path], beams: int = 1, which: str = "best") -> list[str]:
    """``genlab caption RUN IMAGE...``: one caption per image file (greedy, or beam search)."""
    model, tok, config = load_run(run_dir, which)
    if not isinstance(model.config, ShowTellConfig):
        raise ConfigError(f"{run_dir} is not a caption run (its model is {family_of(model.config)})")
    source = ((config.get("data") or {}).get("source")) or "tuxpaint"
    images = [read_image(p, model.config.image.image_size, 1.0 if source == "tuxpaint" else 0.0) for p in paths]
    for p, im in zip(paths, images):
        want = model.config.image.in_channels
        if im.size(0) != want:
            name = lambda n: f"{n} channel{'s' if n != 1 else ''}"
            raise ConfigError(f"{p} has {name(im.size(0))} but {run_dir} was trained on images with {name(want)}")
    return caption_images(
        model, tok, torch.stack(images), beams, 64, from_dict(CaptionRecipe, config).eval.length_penalty
    )


__all__ = [
    "CaptionData",
    "CaptionRecipe",
    "caption_files",
    "caption_images",
    "caption_loss",
    "collate",
    "encode_captions",
    "evaluate_caption_run",
    "image_features",
    "load_split",
    "read_image",
    "score_split",
    "train",
    "word_tokenizer",
]
