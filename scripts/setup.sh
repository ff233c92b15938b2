#!/usr/bin/env bash
# Set up genlab on a fresh machine: Debian data packages, a virtualenv, the package.
# Idempotent: each step is skipped when already done. Used by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

# 1. Offline data from Debian packages (King James Bible, fortunes, Fashion-MNIST).
DEB_PACKAGES="bible-kjv fortunes dataset-fashion-mnist"
missing=""
for p in $DEB_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    echo "installing Debian data packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  else
    echo "note: no apt-get here; the sources$missing stay unavailable (see 'genlab data list')"
  fi
fi

# 2. Virtualenv and the package. torch stays in <2.14, which pip takes as the CPU build.
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.genlab-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>/dev/null || true
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
echo "genlab is set up in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
