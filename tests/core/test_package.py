"""What importing genlab sets up for the process."""

import os
import subprocess
import sys


def _thp_after_import(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    code = "import os, genlab; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def test_import_turns_on_huge_pages_for_large_cpu_tensors_unless_the_user_chose():
    assert _thp_after_import(None) == "1"
    assert _thp_after_import("0") == "0"  # the user's choice wins
