"""Where genlab keeps things.

``GENLAB_HOME`` (default ``~/.genlab``) holds runs and caches; ``GENLAB_DATA``
(default ``$GENLAB_HOME/data``) holds prepared data sources.
"""

import os
from pathlib import Path


def genlab_home() -> Path:
    return Path(os.environ.get("GENLAB_HOME", Path.home() / ".genlab")).expanduser()


def data_dir() -> Path:
    return Path(os.environ.get("GENLAB_DATA", genlab_home() / "data")).expanduser()


def cache_dir() -> Path:
    return genlab_home() / "cache"


def runs_dir() -> Path:
    return Path(os.environ.get("GENLAB_RUNS", "runs")).expanduser()
