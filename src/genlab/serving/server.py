"""Running the API: uvicorn, API keys, loopback without a key, draining on SIGTERM.

Without an API key (``--api-key`` or the file named by ``GENLAB_API_KEYS``, one key a line)
the server listens on loopback only: anyone who can reach the port can use the models.
SIGTERM (or Ctrl-C) drains: new requests get 503, /health turns 503, running streams and
queued requests finish, then uvicorn exits; a second signal exits at once.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
import time
from pathlib import Path

import uvicorn

from genlab.core.errors import ConfigError
from genlab.serving.app import MAX_BODY, create_app
from genlab.serving.models import LanguageModel, ServedModel

KEYS_ENV = "GENLAB_API_KEYS"


def read_keys(api_key: list[str] | None = None, env: dict | None = None) -> frozenset[str]:
    """Keys from ``--api-key`` and from the file ``GENLAB_API_KEYS`` names (blank and # lines skipped)."""
    keys = {k.strip() for k in (api_key or []) if k.strip()}
    path = (env if env is not None else os.environ).get(KEYS_ENV)
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"{KEYS_ENV}={path} is not a file: give a file with one API key a line")
        keys |= {line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip() and line[0] != "#"}
        if not keys:
            raise ConfigError(f"{KEYS_ENV}={path} holds no key")
    return frozenset(keys)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DrainingServer(uvicorn.Server):
    """uvicorn that, on the first SIGTERM/SIGINT, lets running work finish before it stops."""

    def __init__(self, config: uvicorn.Config, app, models: dict[str, ServedModel]):
        super().__init__(config)
        self.guard, self.models = app, models
        self._draining = False

    def handle_exit(self, sig, frame) -> None:
        if self._draining:  # a second signal: stop now
            self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        self.guard.fastapi.state.draining = True
        print("genlab serve: draining running requests, then exiting (signal again to stop now)", file=sys.stderr)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        engines = [m.engine for m in self.models.values() if isinstance(m, LanguageModel)]
        while not all(e.idle for e in engines):
            time.sleep(0.05)
        time.sleep(0.2)  # let the last chunks and [DONE] reach the clients
        self.should_exit = True


def serve(
    models: dict[str, ServedModel],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: frozenset[str] = frozenset(),
    max_body: int = MAX_BODY,
    log_level: str = "info",
    mount=None,
) -> None:
    """Serve ``models`` until SIGTERM (then drain) on ``host``:``port``."""
    if not api_keys and not is_loopback(host):
        raise ConfigError(
            f"--host {host} would expose the models without an API key: give --api-key KEY (or {KEYS_ENV}=FILE), "
            "or listen on 127.0.0.1"
        )
    app = create_app(models, api_keys, max_body, mount)
    if not api_keys:
        print(
            f"genlab serve: no API key, listening on loopback only ({host}); give --api-key to listen elsewhere",
            file=sys.stderr,
        )
    ids = ", ".join(f"{n} ({'text' if isinstance(m, LanguageModel) else 'embeddings'})" for n, m in models.items())
    print(f"genlab serve: models {ids} at http://{host}:{port}/v1", file=sys.stderr)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", timeout_keep_alive=5)
    DrainingServer(config, app, models).run()  # uvicorn routes SIGTERM/SIGINT to handle_exit
