"""The OpenAI-compatible HTTP API over served models (FastAPI).

    GET  /v1/models               the model ids
    POST /v1/completions          text completion (prompt: text, texts, token ids)
    POST /v1/chat/completions     chat completion (runs with a chat template: genlab.serving.chat)
    POST /v1/embeddings           sentence embeddings (encoder runs, minilm)
    GET  /health                  200 {"status": "ok"} (503 while draining)
    GET  /metrics                 Prometheus text: requests, tokens, queue depth, batch size, TTFT

``stream: true`` answers with server-sent events, one JSON chunk per new piece of text and a
final ``data: [DONE]``. Every error is ``{"error": {"message", "type", "param", "code"}}`` with
its status: 400 for a body the API refuses (malformed JSON, an unknown or wrongly typed field,
a value out of range, a prompt or max_tokens past the context), 401 for a missing or wrong API
key, 404 for an unknown model or route, 413 for a body over the limit, 429 when the model's
queue is full, 503 while the server drains. Input a client sends never produces a 500: a 500
is a bug in genlab, answered in the same shape, and the server keeps serving.

:func:`create_app` returns the ASGI application: the FastAPI app inside :class:`Guard`, which
checks API keys and the body size before any parsing, and counts responses by status.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genlab.core.errors import GenlabError
from genlab.serving import metrics
from genlab.serving.models import EmbeddingModel, LanguageModel, ServedModel
from genlab.serving.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    error_body,
)
from genlab.serving.scheduler import Event, QueueFull, SamplingParams, TokenInfo
from genlab.serving.scheduler import Request as GenRequest

MAX_BODY = 1 << 20  # bytes
MAX_EMBED_INPUTS = 2048  # texts per embeddings request, as OpenAI
COMPLETION_MAX_TOKENS = 16  # the completions endpoint's default max_tokens, as OpenAI
OPEN_PATHS = ("/health", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


# --- the guard: API keys, body size, response counts ------------------------------------


class Guard:
    """ASGI wrapper: checks ``Authorization: Bearer KEY`` on /v1 routes (when keys are set), reads
    the body up to ``max_body`` bytes (413 past it, before any parsing), counts statuses."""

    def __init__(self, app, api_keys: frozenset[str], max_body: int):
        self.app, self.api_keys, self.max_body = app, api_keys, max_body
        self.statuses: Counter[int] = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counted(message):
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_keys and scope["path"] not in OPEN_PATHS and not self._authorised(headers):
            return await _send_error(counted, APIError(401, "invalid or missing API key", code="invalid_api_key"))
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return await _send_error(counted, _too_large(self.max_body))
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return await _send_error(counted, _too_large(self.max_body))
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when it comes

        await self.app(scope, replay, counted)

    def _authorised(self, headers: dict[str, str]) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        key = key.strip().encode()
        return any(hmac.compare_digest(key, k.encode()) for k in self.api_keys)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body exceeds the limit of {limit:,} bytes", code="body_too_large")


async def _send_error(send, err: APIError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if err.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- helpers --------------------------------------------------------------------------


def _lm(models: dict[str, ServedModel], name: str) -> LanguageModel:
    m = _find(models, name)
    if not isinstance(m, LanguageModel):
        raise APIError(400, f"model '{name}' is an embedding model: use /v1/embeddings", param="model")
    return m


def _find(models: dict[str, ServedModel], name: str) -> ServedModel:
    if name not in models:
        raise APIError(
            404, f"the model '{name}' does not exist; served: {sorted(models)}", param="model", code="model_not_found"
        )
    return models[name]


def _encode(m: LanguageModel, text: str, param: str) -> list[int]:
    try:
        ids = m.encode(text)
    except (GenlabError, ValueError) as e:  # characters outside a char vocabulary, lone surrogates
        raise APIError(400, f"{param}: {e}", param=param) from None
    if not ids:
        if m.tokenizer.eos_id is None:
            raise APIError(400, f"{param} is empty and this model has no start token: give some text", param=param)
        ids = [m.tokenizer.eos_id]  # as genlab sample: an empty prompt starts at the document separator
    return ids


def _check_context(m: LanguageModel, prompt: list[int], max_tokens: int | None) -> int:
    """max_tokens (or the room left) for a prompt; 400 past the context."""
    block = m.block_size
    if len(prompt) >= block:
        raise APIError(
            400,
            f"the prompt has {len(prompt)} tokens; the model's context is {block} tokens, with room for at least "
            "one new token: shorten the prompt",
            param="prompt",
            code="context_length_exceeded",
        )
    if max_tokens is None:
        return block - len(prompt)
    if len(prompt) + max_tokens > block:
        raise APIError(
            400,
            f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the model's context of {block} "
            f"tokens: ask for at most {block - len(prompt)}",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return max_tokens


def _params(body, max_tokens: int, logprobs: int | None, extra_stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        min_p=body.min_p,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        stop=body.stops() + extra_stop,
        seed=body.seed,
        logprobs=logprobs,
    )


def _submit(m: LanguageModel, prompts: list[list[int]], params: list[SamplingParams], n: int, app_state):
    """Queue one engine request per prompt, all on one queue; 429 when the queue is full."""
    if app_state.draining:
        raise APIError(503, "the server is shutting down", type="server_error", code="shutting_down")
    queue: asyncio.Queue[Event] = asyncio.Queue()
    reqs = []
    try:
        for i, (prompt, p) in enumerate(zip(prompts, params)):
            req = GenRequest(prompt, p, n=n, queue=queue, offset=i * n)
            m.engine.submit(req)
            reqs.append(req)
    except QueueFull as e:
        _cancel(m, reqs)
        raise APIError(429, str(e), type="rate_limit_exceeded", code="queue_full") from None
    except GenlabError as e:
        _cancel(m, reqs)
        raise APIError(400, str(e)) from None
    return reqs, queue


def _cancel(m: LanguageModel, reqs) -> None:
    for r in reqs:
        r.cancel()
    m.engine.wake()


async def _events(queue: asyncio.Queue, total: int, request: Request | None = None) -> AsyncIterator[Event]:
    """Events of ``total`` sequences; with ``request``, stops when the client disconnects."""
    open_ = total
    while open_:
        if request is None or not queue.empty():  # a stream: sse-starlette notices a disconnect
            event = await queue.get()
        else:
            try:
                event = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                if await request.is_disconnected():
                    raise _Gone from None
                continue
        if event.error is not None:
            raise APIError(500, event.error, type="server_error")
        if event.finish_reason is not None:
            open_ -= 1
        yield event


class _Gone(Exception):
    """The client disconnected before the answer was ready."""


def _usage(prompts: list[list[int]], n: int, reqs) -> dict:
    prompt = sum(len(p) for p in prompts)
    completion = sum(r.completion_tokens for r in reqs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion_logprobs(m: LanguageModel, infos: list[TokenInfo], start: int) -> dict:
    tokens, offsets, at = [], [], start
    for t in infos:
        text = m.token_text(t.id)
        tokens.append(text)
        offsets.append(at)
        at += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": [t.logprob for t in infos],
        "top_logprobs": [{m.token_text(i): lp for i, lp in (t.top or [])} for t in infos],
        "text_offset": offsets,
    }


def _chat_logprobs(m: LanguageModel, infos: list[TokenInfo]) -> dict:
    def entry(token: int, lp: float) -> dict:
        text = m.token_text(token)
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

    content = [{**entry(t.id, t.logprob), "top_logprobs": [entry(i, lp) for i, lp in t.top or []]} for t in infos]
    return {"content": content}


def _union_tag(item) -> bool:
    return isinstance(item, str) and ("[" in item or item in ("str", "int", "float", "bool", "list", "dict"))


def _sse(data: dict | str) -> dict:
    return {"data": data if isinstance(data, str) else json.dumps(data)}


# --- the application ------------------------------------------------------------------


def create_app(
    models: dict[str, ServedModel],
    api_keys: frozenset[str] | set[str] = frozenset(),
    max_body: int = MAX_BODY,
    mount=None,
) -> Guard:
    """The ASGI application serving ``models`` (id -> model); starts their engines at start-up.
    ``mount``, if given, is called with the FastAPI app after its routes are in place (``genlab serve
    --studio`` mounts the studio at /studio this way, so serving never imports the studio)."""

    async def lifespan(_app):
        for m in models.values():
            if isinstance(m, LanguageModel):
                m.engine.start()
        yield
        for m in models.values():
            if isinstance(m, LanguageModel):
                m.engine.stop()

    app = FastAPI(title="genlab serve", version="0.1.0", lifespan=lifespan)
    app.state.draining = False
    app.state.models = models
    started = time.perf_counter()

    @app.exception_handler(APIError)
    async def api_error(_request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, e: RequestValidationError):
        errors = e.errors()
        first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
        # A union's errors name the member tried ("str", "list[str]", "function-after[...]"): leave it out.
        loc = [str(x) for x in first.get("loc", ()) if x != "body" and not _union_tag(x)]
        param = ".".join(loc) or None
        kind = first.get("type", "")
        if kind == "json_invalid":
            message, param = "the request body is not valid JSON", None
        elif kind == "missing" and not loc:
            message = "the request needs a JSON body"
        elif kind == "extra_forbidden":
            message = f"unknown field '{param}'"
        elif kind in ("model_attributes_type", "dict_type", "model_type") and not loc:
            message = "the request body must be a JSON object"
        else:
            message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg"))
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return JSONResponse(error_body(message + more, param=param, code=kind or None), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, e: StarletteHTTPException):
        return JSONResponse(error_body(str(e.detail), code=str(e.status_code)), status_code=e.status_code)

    @app.exception_handler(GenlabError)
    async def genlab_error(_request, e: GenlabError):
        return JSONResponse(error_body(str(e)), status_code=400)

    @app.exception_handler(Exception)
    async def bug(_request, e: Exception):
        message = f"internal error: {type(e).__name__}: {e}"
        return JSONResponse(error_body(message, type="server_error"), status_code=500)

    @app.get("/health")
    async def health():
        if app.state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return {"status": "ok", "models": sorted(models), "uptime_s": round(time.perf_counter() - started, 1)}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_text():
        lms = [(name, m) for name, m in models.items() if isinstance(m, LanguageModel)]

        def each(attr):
            return [({"model": name}, getattr(m.engine.stats, attr)) for name, m in lms]

        families = [
            ("genlab_requests_total", "counter", "Generation requests admitted to a model's queue.", each("requests")),
            ("genlab_prompt_tokens_total", "counter", "Prompt tokens prefilled.", each("prompt_tokens")),
            ("genlab_generation_tokens_total", "counter", "Tokens generated.", each("generation_tokens")),
            ("genlab_decode_steps_total", "counter", "Batched decoding steps.", each("steps")),
            ("genlab_queue_depth", "gauge", "Requests waiting for a slot.", each("waiting")),
            ("genlab_batch_size", "gauge", "Sequences in the running batch.", each("running")),
            ("genlab_time_to_first_token_seconds", "histogram", "From queueing to the first token.", each("ttft")),
            (
                "genlab_embedding_inputs_total",
                "counter",
                "Texts embedded.",
                [({"model": n}, app.state.embedded[n]) for n, m in models.items() if isinstance(m, EmbeddingModel)],
            ),
            (
                "genlab_http_responses_total",
                "counter",
                "HTTP responses by status.",
                [({"status": str(s)}, c) for s, c in sorted(guard.statuses.items())],
            ),
        ]
        return PlainTextResponse(metrics.render(families), media_type="text/plain; version=0.0.4")

    app.state.embedded = Counter()

    @app.get("/v1/models")
    async def list_models():
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": m.created, "owned_by": "genlab"}
                for name, m in models.items()
            ],
        }

    @app.get("/v1/models/{name}")
    async def get_model(name: str):
        m = _find(models, name)
        return {"id": name, "object": "model", "created": m.created, "owned_by": "genlab"}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        m = _lm(models, body.model)
        raw = body.prompt
        if isinstance(raw, str) or raw and isinstance(raw[0], int):
            raw = [raw]
        prompts, texts = [], []
        for p in raw:
            if isinstance(p, str):
                ids = _encode(m, p, "prompt")
                texts.append(p)
            else:
                bad = [t for t in p if t >= m.tokenizer.vocab_size]
                if bad:
                    raise APIError(400, f"prompt: token id {bad[0]} is outside the vocabulary", param="prompt")
                ids = list(p)
                texts.append(m.tokenizer.decode(ids))
            prompts.append(ids)
        limit = [_check_context(m, p, body.max_tokens or COMPLETION_MAX_TOKENS) for p in prompts]
        params = [_params(body, k, body.logprobs) for k in limit]
        reqs, queue = _submit(m, prompts, params, body.n, app.state)
        rid, created, n = f"cmpl-{uuid.uuid4().hex}", int(time.time()), body.n
        echo = [texts[i // n] if body.echo else "" for i in range(len(prompts) * n)]

        def chunk(index, text, infos, finish, offset):
            lp = _completion_logprobs(m, infos, offset) if body.logprobs is not None else None
            return {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": index, "text": text, "logprobs": lp, "finish_reason": finish}],
            }

        if body.stream:

            async def stream():
                offsets = [len(e) for e in echo]
                try:
                    for i, e in enumerate(echo):
                        if e:
                            yield _sse(chunk(i, e, [], None, 0))
                    async for ev in _events(queue, len(prompts) * n):
                        if not ev.text and not ev.finish_reason and body.logprobs is None:
                            continue
                        yield _sse(chunk(ev.index, ev.text, ev.tokens, ev.finish_reason, offsets[ev.index]))
                        offsets[ev.index] += len(ev.text)
                    if body.stream_options is not None and body.stream_options.include_usage:
                        yield _sse({**chunk(0, "", [], None, 0), "choices": [], "usage": _usage(prompts, n, reqs)})
                    yield _sse("[DONE]")
                finally:
                    _cancel(m, [r for r in reqs if not r.finished])

            return EventSourceResponse(stream(), ping=15)

        texts_out = list(echo)
        infos: list[list[TokenInfo]] = [[] for _ in echo]
        finish: list[str | None] = [None] * len(echo)
        try:
            async for ev in _events(queue, len(prompts) * n, request):
                texts_out[ev.index] += ev.text
                infos[ev.index] += ev.tokens
                finish[ev.index] = ev.finish_reason or finish[ev.index]
        except _Gone:
            _cancel(m, reqs)
            return JSONResponse(error_body("the client disconnected"), status_code=499)
        except BaseException:
            _cancel(m, reqs)
            raise
        choices = []
        for i in range(len(echo)):
            lp = _completion_logprobs(m, infos[i], len(echo[i])) if body.logprobs is not None else None
            choices.append({"index": i, "text": texts_out[i], "logprobs": lp, "finish_reason": finish[i]})
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": choices,
            "usage": _usage(prompts, n, reqs),
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        m = _lm(models, body.model)
        if m.chat is None:
            raise APIError(
                400,
                f"model {body.model} has no chat template: use /v1/completions, or add a chat_template.json to its "
                "run directory",
                param="model",
                code="no_chat_template",
            )
        prompt_text = m.chat.render([(msg.role, msg.text()) for msg in body.messages])
        prompt = _encode(m, prompt_text, "messages")
        max_tokens = _check_context(m, prompt, body.max_completion_tokens or body.max_tokens)
        k = (body.top_logprobs or 0) if body.logprobs else None
        params = _params(body, max_tokens, k, m.chat.stop)
        reqs, queue = _submit(m, [prompt], [params], body.n, app.state)
        rid, created, n = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.n

        def chunk(index, delta, infos, finish):
            lp = _chat_logprobs(m, infos) if body.logprobs else None
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.model,
                "choices": [{"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}],
            }

        if body.stream:

            async def stream():
                try:
                    for i in range(n):
                        yield _sse(chunk(i, {"role": "assistant", "content": ""}, [], None))
                    async for ev in _events(queue, n):
                        if not ev.text and not ev.finish_reason and not body.logprobs:
                            continue
                        delta = {"content": ev.text} if ev.text or not ev.finish_reason else {}
                        yield _sse(chunk(ev.index, delta, ev.tokens, ev.finish_reason))
                    if body.stream_options is not None and body.stream_options.include_usage:
                        yield _sse({**chunk(0, {}, [], None), "choices": [], "usage": _usage([prompt], n, reqs)})
                    yield _sse("[DONE]")
                finally:
                    _cancel(m, [r for r in reqs if not r.finished])

            return EventSourceResponse(stream(), ping=15)

        texts_out = [""] * n
        infos: list[list[TokenInfo]] = [[] for _ in range(n)]
        finish: list[str | None] = [None] * n
        try:
            async for ev in _events(queue, n, request):
                texts_out[ev.index] += ev.text
                infos[ev.index] += ev.tokens
                finish[ev.index] = ev.finish_reason or finish[ev.index]
        except _Gone:
            _cancel(m, reqs)
            return JSONResponse(error_body("the client disconnected"), status_code=499)
        except BaseException:
            _cancel(m, reqs)
            raise
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": texts_out[i]},
                    "logprobs": _chat_logprobs(m, infos[i]) if body.logprobs else None,
                    "finish_reason": finish[i],
                }
                for i in range(n)
            ],
            "usage": _usage([prompt], n, reqs),
        }

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        m = _find(models, body.model)
        if not isinstance(m, EmbeddingModel):
            raise APIError(400, f"model '{body.model}' generates text: embeddings need an encoder", param="model")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) > MAX_EMBED_INPUTS:
            raise APIError(400, f"input: at most {MAX_EMBED_INPUTS} texts per request", param="input")
        if body.dimensions is not None and body.dimensions != m.encoder.dim:
            raise APIError(400, f"dimensions: this model embeds in {m.encoder.dim} dimensions", param="dimensions")
        try:
            vectors, tokens = await asyncio.to_thread(m.embed, texts)
        except (GenlabError, ValueError) as e:
            raise APIError(400, f"input: {e}", param="input") from None
        app.state.embedded[body.model] += len(texts)
        if body.encoding_format == "base64":
            rows = [base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
        else:
            rows = vectors.tolist()
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(rows)],
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    if mount is not None:
        mount(app)
    guard = Guard(app, frozenset(api_keys), max_body)
    guard.fastapi = app
    return guard
