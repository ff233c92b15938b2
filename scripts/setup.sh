#!/usr/bin/env bash
# Set up genlab on a fresh machine: Debian data packages, a virtualenv, the package.
# Idempotent: each step is skipped when already done. Used by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

# 1. Offline data from Debian packages (King James Bible, fortunes, Fashion-MNIST; for seq2seq the
#    Ding de-en dictionary, man pages, FreeDict dictionaries for word-by-word baselines; for chat the
#    Python docs with their FAQ and glossary, FOLDOC, the Jargon File, the elements, perlfaq, the Debian FAQ).
DEB_PACKAGES="bible-kjv fortunes dataset-fashion-mnist trans-de-en manpages manpages-dev dict-freedict-eng-fra dict-freedict-deu-eng"
DEB_PACKAGES="$DEB_PACKAGES python3-doc dict-foldoc dict-jargon dict-elements perl-doc debian-faq"
# Captioned drawings (issue 19): 160 MB of PNG stamps with captions in many languages.
DEB_PACKAGES="$DEB_PACKAGES tuxpaint-stamps-default"
# The studio's browser tests drive Debian's chromium through Playwright (no browser download).
DEB_PACKAGES="$DEB_PACKAGES chromium"
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
# 1b. apt's English long descriptions (the debian-descriptions summaries): Docker images often set
#     Acquire::Languages "none", so ask for them explicitly (6 MB; nothing is installed).
if command -v apt-get >/dev/null 2>&1 && ! ls /var/lib/apt/lists/*_i18n_Translation-en* >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  echo "fetching apt's English package descriptions"
  $SUDO apt-get update -qq -o Acquire::Languages=en || echo "note: apt-get update failed; debian-descriptions stays unavailable"
fi
# 1c. LibreOffice's en-US and fr help (the help-en-fr pairs): installing them pulls in LibreOffice's
#     runtime (19 packages, 158 MB; 309 packages, 1.1 GB with recommends), so the two .debs (5 MB)
#     are downloaded and unpacked into $GENLAB_DEBS (default ~/.cache/genlab/debs), where genlab looks.
DEBS_DIR=${GENLAB_DEBS:-$HOME/.cache/genlab/debs}
for p in libreoffice-help-en-us libreoffice-help-fr; do
  if [ ! -d "$DEBS_DIR/$p/usr/share/libreoffice/help" ] && [ ! -d /usr/share/libreoffice/help/en-US ] \
     && command -v apt-get >/dev/null 2>&1; then
    tmp=$(mktemp -d); chmod 777 "$tmp"
    if (cd "$tmp" && apt-get download -qq "$p" >/dev/null 2>&1); then
      rm -rf "$DEBS_DIR/$p.part"; mkdir -p "$DEBS_DIR/$p.part"
      dpkg-deb -x "$tmp"/"$p"_*.deb "$DEBS_DIR/$p.part" && rm -rf "$DEBS_DIR/$p" && mv "$DEBS_DIR/$p.part" "$DEBS_DIR/$p"
      echo "unpacked $p into $DEBS_DIR/$p"
    else
      echo "note: apt-get download $p failed; help-en-fr stays unavailable"
    fi
    rm -rf "$tmp"
  fi
done

# 1d. chatterbot-corpus (the chat dialogues): `pip download --no-deps` of its wheel into the data folder,
#     unpacked there by `genlab data prepare chatterbot` (step 3); the wheel is never pip-installed.

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
# 3. Data genlab builds itself (pip download of the chatterbot-corpus and easy-vqa wheels; nothing installed).
"$VENV/bin/python" -m genlab data prepare chatterbot >/dev/null 2>&1 \
  || echo "note: genlab data prepare chatterbot failed (offline?); the chatterbot source stays unavailable"
# easy-VQA (generated shapes and questions for VQA): `pip download --no-deps easy-vqa==1.0`, unpacked
# into the data folder by genlab; never pip-installed.
"$VENV/bin/python" -m genlab data prepare easy-vqa >/dev/null 2>&1 \
  || echo "note: genlab data prepare easy-vqa failed (offline?); the easy-vqa source stays unavailable"
echo "genlab is set up in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
