"""Fuzzing the API from its own OpenAPI schema (schemathesis + hypothesis): no 5xx, ever, and
every error in the OpenAI shape. Valid bodies (half of them aimed at a served model of the
right kind), invalid ones, and bodies that are not JSON."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from .conftest import live_server, raw, served

SERVED = {"/v1/completions": "tiny", "/v1/chat/completions": "tiny-chat", "/v1/embeddings": "tiny-bert"}


@pytest.fixture(scope="module")
def server(lm_run, chat_run, bert_run):
    with live_server(served(lm_run, chat_run, bert_run, max_batch=8)) as url:
        yield url


def _letters(value):
    """Strings cut down to letters and spaces (which the char vocabulary holds), recursively."""
    if isinstance(value, str):
        return "".join(ch for ch in value if ch.isascii() and (ch.isalpha() or ch == " ")) or "a"
    if isinstance(value, list):
        return [_letters(v) for v in value]
    if isinstance(value, dict):
        return {k: v if k in ("role", "type") else _letters(v) for k, v in value.items()}
    return value


def aimed(case):
    """The same body, aimed at the served model for its route, its texts in the model's vocabulary."""
    if isinstance(case.body, dict) and case.path in SERVED:
        body = {**case.body, "model": SERVED[case.path]}
        for key in ("prompt", "messages", "input"):
            if key in body:
                body[key] = _letters(body[key])
        case.body = body
    return case


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def fuzz(url: str, examples: int) -> dict:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    seen: dict = {}
    for result in schema.get_all_operations():
        op = result.ok()
        positive = op.as_strategy(generation_mode=GenerationMode.POSITIVE)
        negative = op.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        strategy = st.one_of(positive.map(aimed), positive, negative) if op.method == "post" else positive
        n = examples if op.method == "post" else max(2, examples // 10)

        @given(case=strategy)
        @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(base_url=url, timeout=60)
            check(response)
            key = (case.path, response.status_code)
            seen[key] = seen.get(key, 0) + 1

        run()
    return seen


def test_fuzz_fast(server):
    seen = fuzz(server, 14)
    assert sum(seen.values()) >= 45
    assert {("/v1/completions", 200), ("/v1/chat/completions", 200)} <= set(seen), seen


@pytest.mark.slow
def test_fuzz_hundreds_of_cases(server):
    seen = fuzz(server, 100)
    assert sum(seen.values()) >= 300


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe", b"null", b'"text"', b"12", b'{"model": null}', b'{"model": "tiny", "prompt": {"a": 1}}',
     b'{"model": "tiny", "prompt": "a", "n": 1e400}', b'{"model": "tiny", "prompt": [[]]}',
     b'{"model": "tiny", "prompt": "a", "stop": ["", "x"]}', b'{"model": "tiny", "prompt": "\\ud800"}'],
)  # fmt: skip
def test_hostile_bodies(server, body):
    for path in SERVED:
        status, data = raw(server, "POST", path, body)
        assert status < 500, (path, body, data)
        if status >= 400:
            assert set(data["error"]) == {"message", "type", "param", "code"}


def test_a_wrong_content_type_is_still_an_openai_error(server):
    status, data = raw(server, "POST", "/v1/completions", json.dumps({"model": "tiny", "prompt": "a"}),
                       {"content-type": "text/plain"})  # fmt: skip
    assert status < 500 and (status == 200 or set(data["error"]) == {"message", "type", "param", "code"})
