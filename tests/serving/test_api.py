"""The OpenAI-compatible API through the official openai client, against a live server."""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest
import torch

from genlab.generation.decode import GenerationConfig, generate
from genlab.recipes.embed import embed as genlab_embed
from genlab.runs import load_run
from genlab.serving.chat import ChatTemplate

from .conftest import TEMPLATE, live_server, raw, served

KEY = "test-key"


@pytest.fixture(scope="module")
def server(lm_run, chat_run, bert_run):
    models = served(lm_run, chat_run, bert_run, "minilm", max_batch=8)
    with live_server(models, api_keys={KEY}, max_body=64_000) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def reference(lm_run):
    model, tok, _ = load_run(lm_run)

    def greedy(prompt: str, n: int, stop=()) -> str:
        cfg = GenerationConfig(max_new_tokens=n, temperature=0.0, stop=tuple(stop))
        return generate(model, [tok.encode(prompt)], cfg, decode=tok.decode)[0][0].text

    greedy.model, greedy.tok = model, tok
    return greedy


def test_list_models(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tiny", "tiny-chat", "tiny-bert", "minilm"]
    assert client.models.retrieve("tiny").owned_by == "genlab"


def test_completion_greedy_equals_genlab_generate(client, reference):
    out = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=24, temperature=0)
    assert out.choices[0].text == reference("ROMEO:", 24)
    assert out.choices[0].finish_reason == "length"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (6, 24, 30)
    several = client.completions.create(model="tiny", prompt=["ab", "First"], max_tokens=5, temperature=0, n=2)
    texts = [c.text for c in sorted(several.choices, key=lambda c: c.index)]
    assert texts == [reference("ab", 5)] * 2 + [reference("First", 5)] * 2


def test_streamed_chat_concatenates_to_the_whole_answer(client, reference):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}]
    whole = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=30, temperature=0)
    pieces, reasons, roles = [], [], []
    for chunk in client.chat.completions.create(
        model="tiny-chat", messages=messages, max_tokens=30, temperature=0, stream=True
    ):
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            roles.append(c.delta.role)
            reasons.append(c.finish_reason)
    text = whole.choices[0].message.content
    assert "".join(pieces) == text and len(pieces) > 3
    assert roles[0] == "assistant" and reasons[-1] == whole.choices[0].finish_reason == "length"
    prompt = ChatTemplate.from_dict(TEMPLATE).render([(m["role"], m["content"]) for m in messages])
    assert text == reference(prompt, 30)
    assert prompt == "Be brief.\nUser: Who are you?\nMe:"


def test_chat_needs_a_template(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert "model tiny has no chat template" in e.value.body["message"]


def test_embeddings_equal_genlab_embed(client, bert_run, tmp_path):
    texts = ["A man walks his dog.", "The stock market fell today.", "Someone is walking a dog."]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    for model, spec in (("minilm", "minilm"), ("tiny-bert", bert_run)):
        genlab_embed(spec, src, tmp_path / f"{model}.npy", progress=False)
        want = np.load(tmp_path / f"{model}.npy")
        got = client.embeddings.create(model=model, input=texts)  # base64, the client's default
        assert np.array_equal(np.array([d.embedding for d in got.data], dtype=np.float32), want)
        floats = client.embeddings.create(model=model, input=texts, encoding_format="float")
        assert np.allclose(np.array([d.embedding for d in floats.data]), want, atol=1e-7)
        assert got.usage.prompt_tokens > len(texts)
    one = client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    assert np.allclose(one.data[0].embedding, np.load(tmp_path / "minilm.npy")[0], atol=1e-6)


def test_n_samples_with_a_seed_are_reproducible(client):
    def texts():
        out = client.completions.create(
            model="tiny", prompt="MENENIUS:", max_tokens=16, temperature=1.0, top_p=0.95, n=3, seed=7
        )
        return [c.text for c in sorted(out.choices, key=lambda c: c.index)]

    first = texts()
    assert texts() == first and len(set(first)) == 3
    extra = client.completions.create(
        model="tiny", prompt="MENENIUS:", max_tokens=16, n=2, seed=7,
        extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.3},
    )  # fmt: skip
    assert len(extra.choices) == 2


def test_logprobs(client, reference):
    model, tok = reference.model, reference.tok
    out = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=4, temperature=0, logprobs=2)
    lp = out.choices[0].logprobs
    ids = tok.encode("ROMEO:")
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids]))[0, -1], -1)
    first = int(logp.argmax())
    assert lp.tokens[0] == tok.decode([first])
    assert lp.token_logprobs[0] == pytest.approx(logp[first].item(), abs=1e-4)
    assert len(lp.top_logprobs[0]) <= 2 and lp.text_offset[:2] == [0, 1]
    chat = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0,
        logprobs=True, top_logprobs=3,
    )  # fmt: skip
    content = chat.choices[0].logprobs.content
    assert len(content) == 3 and len(content[0].top_logprobs) == 3
    assert content[0].top_logprobs[0].logprob == pytest.approx(content[0].logprob)
    assert "".join(c.token for c in content) == chat.choices[0].message.content


def test_stop_strings(client, reference):
    full = reference("ROMEO:", 40)
    stop = full[10:12]
    out = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=40, temperature=0, stop=[stop, "@@"])
    assert out.choices[0].text == full[: full.index(stop)]
    assert out.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=40, temperature=0, stop=stop, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == out.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"


def error_of(status: int, body) -> tuple[int, str, str | None]:
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return status, body["error"]["type"], body["error"]["param"]


@pytest.mark.parametrize(
    "body, want",
    [
        ("{not json", (400, "invalid_request_error", None)),
        ("[1, 2]", (400, "invalid_request_error", None)),
        ({"model": "nope", "prompt": "a"}, (404, "invalid_request_error", "model")),
        ({"model": "tiny", "prompt": "a", "colour": "red"}, (400, "invalid_request_error", "colour")),
        ({"model": "tiny", "prompt": "a", "max_tokens": "5"}, (400, "invalid_request_error", "max_tokens")),
        ({"model": "tiny", "prompt": "a", "stream": "yes"}, (400, "invalid_request_error", "stream")),
        ({"model": "tiny", "prompt": "a", "max_tokens": 300}, (400, "invalid_request_error", "max_tokens")),
        ({"model": "tiny", "prompt": "a", "temperature": -0.5}, (400, "invalid_request_error", "temperature")),
        ({"model": "tiny", "prompt": "a" * 300}, (400, "invalid_request_error", "prompt")),
        ({"model": "tiny", "prompt": "\u4e2d"}, (400, "invalid_request_error", "prompt")),
        ({"model": "tiny", "prompt": [99999]}, (400, "invalid_request_error", "prompt")),
        ({"model": "tiny-bert", "prompt": "a"}, (400, "invalid_request_error", "model")),
    ],
)
def test_completion_errors(server, body, want):
    status, data = raw(server, "POST", "/v1/completions", body if isinstance(body, str) else json.dumps(body),
                       {"authorization": f"Bearer {KEY}"})  # fmt: skip
    assert error_of(status, data) == want


def test_other_errors(server, client):
    auth = {"authorization": f"Bearer {KEY}"}
    empty = json.dumps({"model": "tiny-chat", "messages": []})
    assert error_of(*raw(server, "POST", "/v1/chat/completions", empty, auth)) == (
        400, "invalid_request_error", "messages",
    )  # fmt: skip
    status, body = raw(server, "POST", "/v1/completions", json.dumps({"model": "tiny", "prompt": "a"}),
                       {"authorization": "Bearer wrong"})  # fmt: skip
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    big = json.dumps({"model": "tiny", "prompt": "a" * 70_000})
    status, body = raw(server, "POST", "/v1/completions", big, auth)
    assert error_of(status, body)[0] == 413
    assert error_of(*raw(server, "GET", "/v1/nowhere", None, auth))[0] == 404
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="a")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="minilm", input="")
    assert raw(server, "GET", "/health")[0] == 200  # open without a key
    status, text = raw(server, "GET", "/metrics")
    assert status == 200 and 'genlab_requests_total{model="tiny"}' in text
    assert "genlab_time_to_first_token_seconds_count" in text and 'genlab_http_responses_total{status="401"}' in text
    assert client.completions.create(model="tiny", prompt="a", max_tokens=2).choices[0].text  # still serving


def test_queue_full_is_429(lm_run):
    models = served(lm_run, max_batch=1, max_queue=1)
    with live_server(models) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        running = c.completions.create(model="tiny", prompt="a", max_tokens=250, temperature=0, stream=True)
        next(iter(running))  # it holds the only slot
        waiting = c.completions.create(model="tiny", prompt="b", max_tokens=250, temperature=0, stream=True)
        body = json.dumps({"model": "tiny", "prompt": "c", "max_tokens": 2})
        status, data = raw(url, "POST", "/v1/completions", body)
        assert error_of(status, data)[0] == 429 and data["error"]["code"] == "queue_full"
        assert len("".join(ch.choices[0].text for ch in running)) > 0
        assert len("".join(ch.choices[0].text for ch in waiting)) > 0
