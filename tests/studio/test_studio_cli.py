"""genlab studio and genlab serve --studio on the command line: the options and the one-line errors."""

from __future__ import annotations

import sys

from genlab import cli


def genlab(capsys, *args) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["genlab", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def test_studio_on_a_missing_folder_is_one_line(capsys, tmp_path):
    code, _, err = genlab(capsys, "studio", tmp_path / "nowhere")
    want = f"error: {tmp_path / 'nowhere'} is not a folder: give the folder your runs are in"
    assert code == 2 and err.strip() == want


def test_the_options(capsys):
    code, out, _ = genlab(capsys, "studio", "--help")
    assert code == 0 and "--port" in out and "--host" in out and "runs_dir" in out
    code, out, _ = genlab(capsys, "serve", "--help")
    assert code == 0 and "--studio" in out
    assert cli._studio_mount(None, "127.0.0.1", 8000) is None
