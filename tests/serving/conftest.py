"""Live servers for the serving tests: uvicorn on a free loopback port, in a thread of the test."""

from __future__ import annotations

import dataclasses
import http.client
import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from conftest import tiny_recipe

from genlab.core.config import save_yaml, to_dict
from genlab.core.registry import preset
from genlab.models.bert import Bert
from genlab.recipes import run_task
from genlab.serving.app import create_app
from genlab.serving.models import load_model
from genlab.tokenizers import WordPieceTokenizer
from genlab.training.checkpoint import save_checkpoint

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
TEMPLATE = {"system": "{content}\n", "user": "User: {content}\n", "assistant": "Me: {content}\n", "generation": "Me:"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(models: dict, api_keys=frozenset(), max_body: int = 1 << 20):
    """Serve ``models`` on 127.0.0.1:<free port>; yields the base URL."""
    port = free_port()
    app = create_app(models, api_keys, max_body)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def raw(url: str, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
    """(status, parsed JSON or text) of one plain HTTP request."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    if isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers={"content-type": "application/json", **(headers or {})})
    res = conn.getresponse()
    data = res.read().decode()
    conn.close()
    try:
        return res.status, json.loads(data)
    except json.JSONDecodeError:
        return res.status, data


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory) -> Path:
    """A gpt-micro char run (context 256) trained for 10 steps from a wide initialisation (std 0.5),
    so that greedy continuations differ from prompt to prompt (a converged tiny model repeats spaces)."""
    root = tmp_path_factory.mktemp("serve_runs")
    recipe = tiny_recipe(FIXTURE, max_steps=10, eval_interval=10)
    recipe["model"].update(block_size=256, init_std=0.5)
    run_task(recipe, run_dir=root / "tiny")
    return root / "tiny"


@pytest.fixture(scope="session")
def chat_run(lm_run) -> Path:
    path = lm_run.parent / "tiny-chat"
    shutil.copytree(lm_run, path)
    (path / "chat_template.json").write_text(json.dumps(TEMPLATE))
    return path


@pytest.fixture(scope="session")
def bert_run(tmp_path_factory) -> Path:
    """A bert-micro run directory (random weights, context 32) with a WordPiece vocabulary."""
    tok = WordPieceTokenizer.train(FIXTURE.read_text(encoding="utf-8"), vocab_size=300)
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=tok.vocab_size, block_size=32)
    path = tmp_path_factory.mktemp("serve_bert") / "tiny-bert"
    path.mkdir()
    tok.save(path)
    save_yaml({"task": "mlm", "model": {"family": "bert", **to_dict(cfg)}}, path / "config.yaml")
    save_checkpoint(path / "checkpoints", 0, {"model": Bert(cfg)}, {}, ("last", "best"))
    return path


def served(*specs, max_batch: int = 8, max_queue: int = 64) -> dict:
    models = {}
    for spec in specs:
        m = load_model(spec, max_batch=max_batch, max_queue=max_queue)
        models[m.name] = m
    return models
