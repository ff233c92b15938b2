"""``genlab serve`` refuses what it cannot serve with one line, before it listens."""

import pytest
from test_cli import one_line_error

from genlab.serving.chat import ChatTemplate, find_template


def test_serve_errors_are_one_line(lm_run, tmp_path, capsys, monkeypatch):
    one_line_error(capsys, "serve", lm_run, lm_run, match="two models are called 'tiny': name them apart with --name")
    one_line_error(capsys, "serve", lm_run, "--name", "a", "--name", "b", match="2 --name options for 1 runs")
    one_line_error(capsys, "serve", tmp_path / "nothing", match="no model")
    one_line_error(capsys, "serve", lm_run, "--max-batch", "0", match="--max-batch must be >= 1")
    keys = tmp_path / "keys"
    keys.write_text("\n# none\n")
    monkeypatch.setenv("GENLAB_API_KEYS", str(keys))
    one_line_error(capsys, "serve", lm_run, match="holds no key")


def test_chat_templates(tmp_path):
    t = ChatTemplate.from_dict({"user": "<u>{content}</u>", "generation": "<a>", "stop": "</a>"})
    assert t.render([("developer", "be {brief}"), ("user", "hi")]) == "be {brief}\n<u>hi</u><a>" and t.stop == ("</a>",)
    for bad, match in [({"user": "no slot"}, "holding '{content}'"), ({"robot": "{content}"}, "unknown keys"),
                       ({"stop": [""]}, "non-empty"), ([], "JSON object")]:  # fmt: skip
        with pytest.raises(Exception, match=match):
            ChatTemplate.from_dict(bad)
    (tmp_path / "chat_template.json").write_text("{oops")
    with pytest.raises(Exception, match="not valid JSON"):
        find_template(tmp_path, None)

    class Tok:
        chat_template = {"user": "U:{content}"}

    assert find_template(tmp_path / "elsewhere", Tok()).user == "U:{content}"
    assert find_template(tmp_path / "elsewhere", object()) is None
