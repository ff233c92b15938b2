"""The chat template: role tokens in the tokenizer, ids with an assistant mask, context fitting,
the Hugging Face (Jinja) export rendered by transformers, and the template in genlab-to-hf output."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from genlab.core.config import save_yaml, to_dict
from genlab.core.errors import ConfigError, TokenizerError
from genlab.core.registry import preset
from genlab.models.gpt import GPT
from genlab.tokenizers import CharTokenizer, load_tokenizer
from genlab.tokenizers import chat as T
from genlab.training.checkpoint import save_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": 'What\'s 2+2? "quoted" {braces} é'},
    {"role": "assistant", "content": " Four. "},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "Six."},
]


@pytest.fixture(scope="module")
def tok():
    return T.train_chat_bpe(FIXTURE.read_text(encoding="utf-8"), vocab_size=400)


def test_role_tokens_are_single_special_tokens_saved_with_the_tokenizer(tok, tmp_path: Path) -> None:
    ids = T.role_token_ids(tok)
    assert list(ids) == list(T.ROLE_TOKENS) and sorted(ids.values()) == [1, 2, 3, 4]  # after <|endoftext|>
    assert tok.encode("x<|user|>y") == [*tok.encode("x"), ids[T.USER_TOKEN], *tok.encode("y")]
    tok.save(tmp_path)
    assert T.role_token_ids(load_tokenizer(tmp_path)) == ids
    plain = load_tokenizer(tmp_path)
    T.add_role_tokens(plain)  # a no-op when present
    assert plain.vocab_size == tok.vocab_size
    with pytest.raises(TokenizerError, match="cannot hold role tokens"):
        T.add_role_tokens(CharTokenizer.train("abc"))


def test_render_ids_masks_exactly_the_assistant_tokens(tok) -> None:
    t = T.ROLE_TOKEN_TEMPLATE
    ids, mask = T.render_ids(t, tok, CONVO)
    assert len(ids) == len(mask) and tok.decode(ids) == t.render(CONVO, add_generation_prompt=False)
    learned = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert learned == " Four. <|end|>\nSix.<|end|>\n"  # content + end of turn, never a role opening
    # every masked span starts right after an assistant opening
    starts = [k for k in range(len(mask)) if mask[k] and (k == 0 or not mask[k - 1])]
    end = tok.encode(T.ASSISTANT_TOKEN + "\n")
    assert len(starts) == 2 and all(ids[k - len(end) : k] == end for k in starts)
    prompt = T.prompt_ids(t, tok, CONVO[:2])
    assert ids[: len(prompt)] == prompt  # a generation prompt is a prefix of the training ids
    assert tok.decode(prompt).endswith("<|assistant|>\n")


def test_fit_context_drops_the_oldest_turns_and_keeps_the_system_prompt(tok) -> None:
    t = T.ROLE_TOKEN_TEMPLATE
    full = T.prompt_ids(t, tok, CONVO + [{"role": "user", "content": "last?"}])
    kept, ids = T.fit_context(t, tok, CONVO + [("user", "last?")], budget=len(full))
    assert len(kept) == 6 and ids == full
    kept, ids = T.fit_context(t, tok, CONVO + [("user", "last?")], budget=len(full) - 1)
    # the first exchange (question and answer) went; the system prompt and the rest stayed
    assert kept == [("system", "Be brief."), ("user", "And 3+3?"), ("assistant", "Six."), ("user", "last?")]
    assert ids == T.prompt_ids(t, tok, kept) and len(ids) < len(full)
    only = T.prompt_ids(t, tok, [("system", "Be brief."), ("user", "last?")])
    kept, ids = T.fit_context(t, tok, CONVO + [("user", "last?")], budget=len(only))
    assert kept == [("system", "Be brief."), ("user", "last?")] and ids == only
    with pytest.raises(ConfigError, match="system prompt and the last message take"):
        T.fit_context(t, tok, CONVO + [("user", "last?")], budget=len(only) - 1)


def test_clean_removes_markup_and_stops_at_end_of_turn() -> None:
    t = T.ROLE_TOKEN_TEMPLATE
    assert t.clean("Six.<|end|>\n<|user|>\nmore") == "Six."
    assert t.clean("<|assistant|>\nhi <|system|>there") == "hi there"
    assert set(t.markup()) == {*T.ROLE_TOKENS}


def test_template_file_round_trip_and_errors(tmp_path: Path) -> None:
    T.save_template(T.ROLE_TOKEN_TEMPLATE, tmp_path)
    assert T.find_template(tmp_path, None) == T.ROLE_TOKEN_TEMPLATE
    (tmp_path / T.TEMPLATE_FILE).write_text(json.dumps({"user": "{content}", "tool": "{content}"}))
    with pytest.raises(ConfigError, match="unknown keys"):
        T.find_template(tmp_path, None)
    with pytest.raises(ConfigError, match="unknown chat role 'robot'"):
        T.ROLE_TOKEN_TEMPLATE.render([("robot", "x")])


@pytest.mark.parametrize("template", [T.ROLE_TOKEN_TEMPLATE, T.ChatTemplate(user="U: {content}\n", generation="A:")])
def test_hugging_face_apply_chat_template_renders_the_same_text(tok, tmp_path: Path, template) -> None:
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    hf.chat_template = T.to_jinja(template)
    msgs = [{"role": "developer", "content": "dev"}, *CONVO]
    for gen in (True, False):
        got = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        assert got == template.render(msgs, add_generation_prompt=gen)


def _chat_run(tok, path: Path) -> Path:
    cfg = dataclasses.replace(preset("gpt-micro"), vocab_size=tok.vocab_size, block_size=64)
    path.mkdir(parents=True)
    tok.save(path)
    T.save_template(T.ROLE_TOKEN_TEMPLATE, path)
    save_yaml({"task": "lm", "model": {"family": "gpt", **to_dict(cfg)}}, path / "config.yaml")
    save_checkpoint(path / "checkpoints", 0, {"model": GPT(cfg)}, {}, ("last", "best"))
    return path


def test_genlab_to_hf_exports_the_chat_template(tok, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from genlab.recipes.convert import genlab_to_hf

    run = _chat_run(tok, tmp_path / "run")
    done = genlab_to_hf(run, tmp_path / "hf")
    assert "chat template" in done.tokenizer
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert hf.apply_chat_template(CONVO, tokenize=False, add_generation_prompt=True) == T.ROLE_TOKEN_TEMPLATE.render(
        CONVO
    )
    assert hf.convert_tokens_to_ids(T.END_TOKEN) == T.role_token_ids(tok)[T.END_TOKEN]
