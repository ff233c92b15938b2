"""Under load: 32 concurrent greedy streams, a client killed mid-stream, SIGTERM draining.

Bounded and loopback only: every server here listens on 127.0.0.1 and each test stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from genlab.generation.decode import GenerationConfig, generate
from genlab.runs import load_run

from .conftest import FIXTURE, free_port, live_server, raw, served


def prompts_and_lengths(k: int) -> list[tuple[str, int]]:
    lines = [line for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(lines[3 * i][: 5 + (i * 7) % 40], 8 + (i * 13) % 57) for i in range(k)]


def test_32_concurrent_streams_each_equal_to_the_request_alone(lm_run):
    model, tok, _ = load_run(lm_run)
    cases = prompts_and_lengths(32)
    alone = [
        generate(model, [tok.encode(p)], GenerationConfig(max_new_tokens=m, temperature=0.0), decode=tok.decode)[0][0]
        for p, m in cases
    ]
    models = served(lm_run, max_batch=32)

    async def one(client, prompt, max_tokens):
        stream = await client.completions.create(
            model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True
        )
        text, finish = "", None
        async for chunk in stream:
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
        return text, finish

    async def main(url):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        try:
            return await asyncio.gather(*(one(client, p, m) for p, m in cases), return_exceptions=True)
        finally:
            await client.close()

    with live_server(models) as url:
        results = asyncio.run(main(url))
        _, metrics = raw(url, "GET", "/metrics")
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    for (text, finish), want in zip(results, alone):
        assert text == want.text and finish == "length"
    assert models["tiny"].engine.stats.requests == 32
    peak = models["tiny"].engine.stats.steps
    assert peak < sum(m for _, m in cases)  # the streams shared decoding steps
    assert 'genlab_generation_tokens_total{model="tiny"}' in metrics


def test_a_killed_client_frees_its_slot(lm_run):
    models = served(lm_run, max_batch=1, max_queue=4)
    engine = models["tiny"].engine
    hook = engine.model.register_forward_hook(lambda *_: time.sleep(0.005))  # 250 steps: over a second
    try:
        with live_server(models) as url:
            host, port = url.removeprefix("http://").split(":")
            body = json.dumps({"model": "tiny", "prompt": "a", "max_tokens": 250, "temperature": 0, "stream": True})
            sock = socket.create_connection((host, int(port)))
            sock.sendall(
                f"POST /v1/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n{body}".encode()
            )
            got = b""
            while b"data:" not in got:
                got += sock.recv(4096)
            sock.close()  # killed mid-stream
            c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
            out = c.completions.create(model="tiny", prompt="b", max_tokens=5, temperature=0)  # admitted
            assert out.choices[0].finish_reason == "length"
            assert engine.stats.generation_tokens < 250  # the killed stream stopped early
            for _ in range(200):
                if engine.idle:
                    break
                time.sleep(0.01)
            assert engine.idle
            assert c.completions.create(model="tiny", prompt="c", max_tokens=3).choices[0].text is not None
    finally:
        hook.remove()


def test_sigterm_drains_running_streams_then_exits(lm_run, tmp_path):
    port = free_port()
    src = Path(__file__).parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "genlab", "serve", str(lm_run), "--port", str(port), "--threads", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started = []  # the log up to uvicorn's "running on" line: it listens (and handles signals) from then on
        for line in proc.stdout:
            started.append(line)
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail("genlab serve exited before it listened:\n" + "".join(started))
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        stream = c.completions.create(
            model="tiny", prompt="a", max_tokens=250, temperature=0, n=8, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = iter(stream)
        first = next(chunks)
        proc.send_signal(signal.SIGTERM)
        rest = list(chunks)
        assert rest[-1].usage.completion_tokens == 8 * 250  # every sequence ran to its end
        finished = [ch.choices[0].finish_reason for ch in [first, *rest] if ch.choices]
        assert finished.count("length") == 8
        log = "".join(started) + proc.communicate()[0]
        assert proc.returncode == 0, log
        assert "no API key, listening on loopback only" in log and "draining" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_public_host_without_a_key(lm_run):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "genlab", "serve", str(lm_run), "--host", "0.0.0.0", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "without an API key" in out.stderr and "Traceback" not in out.stderr


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# team keys\nalpha\n\nbeta\n")
    return path


def test_keys_from_the_environment(keys_file, monkeypatch):
    from genlab.serving.server import read_keys

    assert read_keys(["cli"], {"GENLAB_API_KEYS": str(keys_file)}) == {"cli", "alpha", "beta"}
    assert read_keys(None, {}) == frozenset()
