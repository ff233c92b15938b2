"""Tier 6: genlab runs behind an OpenAI-compatible HTTP API (``genlab serve``).

- :mod:`~genlab.serving.scheduler`: continuous batching, one decode loop per language model;
- :mod:`~genlab.serving.protocol`: the OpenAI request bodies and errors;
- :mod:`~genlab.serving.models`: run directories (and ``minilm``) as served models;
- :mod:`~genlab.serving.app`: the FastAPI application;
- :mod:`~genlab.serving.server`: uvicorn, API keys, draining on SIGTERM.

FastAPI, uvicorn and sse-starlette (the ``serve`` extra) are imported only by ``app`` and
``server``; the scheduler needs torch alone.
"""
