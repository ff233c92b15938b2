"""genlab rag query|eval --answer on the command line: cited answers, the answer metrics, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from test_cli import genlab, one_line_error
from test_cli_rag import bert_run

from genlab.core.config import save_yaml, to_dict
from genlab.core.registry import preset
from genlab.models.bert import Bert
from genlab.rag.answer import NOT_IN_KB
from genlab.runs.encoders import wordpiece_tokenizer
from genlab.training.checkpoint import save_checkpoint


def qa_run(path: Path) -> Path:
    """An untrained bert-micro run with the 'qa' head and MiniLM's vocabulary (context 128)."""
    tok = wordpiece_tokenizer("minilm")
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=tok.vocab_size, block_size=128, heads=["qa"])
    path.mkdir(parents=True)
    tok.save(path)
    save_yaml({"task": "qa", "model": {"family": "bert", **to_dict(cfg)}, "data": {"max_length": 128}},
              path / "config.yaml")  # fmt: skip
    save_checkpoint(path / "checkpoints", 0, {"model": Bert(cfg)}, {}, ("last", "best"))
    return path


class _Cites(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        assert "<<<passage [1]" in body["messages"][-1]["content"]
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Version two [1] [5]."}}]})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("rag_answer")
    kb = root / "kb"
    kb.mkdir()
    (kb / "notes.txt").write_text("Release notes\n\nVersion two fixes the printer driver.\n")
    (kb / "install.md").write_text("# Install\n\nRun the installer. It copies the files.\n")
    embed = bert_run(root / "embed")
    code = genlab("rag", "ingest", kb, "--index", root / "idx", "--embed-model", embed, "--no-progress")[0]
    assert code == 0
    return root / "idx"


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    return qa_run(tmp_path_factory.mktemp("rag_reader") / "qa")


def test_query_answers_generatively_with_citations(index, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Cites)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        code, out, err = genlab("rag", "query", index, "what fixes the printer driver", "--mode", "bm25", "-k", "1",
                                "--answer", "generative", "--llm-url", url, capsys=capsys)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "Version two [1]."
    assert lines[1].startswith("[1] notes.txt")
    assert "point at no passage: 5" in lines[2]


def test_query_answers_extractively(index, reader, capsys):
    code, out, err = genlab("rag", "query", index, "what fixes the printer driver", "--mode", "bm25",
                            "--answer", "extractive", "--model", reader, capsys=capsys)  # fmt: skip
    assert code == 0, err
    first = out.strip().splitlines()[0]
    assert first == NOT_IN_KB or first.endswith(("[1]", "[2]"))
    code, out, err = genlab("rag", "query", index, "printer", "--mode", "bm25", "--answer", "extractive",
                            "--model", reader, "--threshold", "1e9", capsys=capsys)  # fmt: skip
    assert code == 0 and out.strip() == NOT_IN_KB


def test_eval_adds_the_answer_metrics(index, reader, tmp_path, capsys):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "printer driver fix", "gold": "notes.txt",
                              "answers": ["Version two fixes the printer driver."]}) + "\n")  # fmt: skip
    code, out, err = genlab("rag", "eval", index, qa, "--mode", "bm25", "--answer", "extractive", "--model", reader,
                            capsys=capsys)  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert set(result["answer"]) >= {"exact_match", "f1", "groundedness", "abstained", "n"}
    assert result["answer"]["n"] == 1 and result["retrieval"]["bm25"]["recall@1"] == 1.0


def test_unreachable_llm_url_and_missing_reader_are_one_line(index, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_line_error(capsys, "rag", "query", index, "printer", "--answer", "generative", "--llm-url",
                   f"http://127.0.0.1:{port}", match=f"cannot reach the LLM at http://127.0.0.1:{port}/v1")  # fmt: skip
    one_line_error(capsys, "rag", "query", index, "printer", "--answer", "generative", match="needs --llm-url URL")
    one_line_error(capsys, "rag", "query", index, "printer", "--answer", "extractive", match="needs --model RUN")
    one_line_error(capsys, "rag", "query", index, "printer", "--answer", "oracle", match="unknown reader 'oracle'")
