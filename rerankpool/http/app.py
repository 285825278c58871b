"""The HTTP gateway: the rerank APIs that clients already speak, in front of a pool.

A gateway is a client of the broker like any other: one ``AsyncClient`` per process,
no queue and no state that a second gateway would need, so any number can run on one
port or on many hosts. Routes stay thin: check the key, read the deadline, call the
pool, shape the reply. Errors are mapped in one place (``errors``) to each shape's
status and body; a caller that hangs up has its request cancelled at the broker, so
its pairs never reach a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
import uuid
from typing import Any, Awaitable, Callable, Sequence, TypeVar, Union

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rerankpool._version import __version__
from rerankpool.client import AsyncClient, Ranking, Scores, Usage
from rerankpool.errors import RerankPoolError
from rerankpool.http import schemas as S
from rerankpool.http.config import DEADLINE_HEADER, GatewayConfig
from rerankpool.http.dashboard import PAGE as DASHBOARD_PAGE
from rerankpool.http.errors import UNAUTHORIZED, ApiError, Shape, error_body, validation_message
from rerankpool.http.metrics import GatewayMetrics
from rerankpool.models.families import list_families
from rerankpool.protocol import Chunking, ErrorCode, Truncation

logger = logging.getLogger(__name__)

T = TypeVar("T")

SHAPE_BY_PATH = {"/rerank": Shape.TEI, "/info": Shape.TEI, "/health": Shape.TEI, "/v1/rerank": Shape.V1,
                 "/v2/rerank": Shape.COHERE}
ROUTES = ("/rerank", "/v1/rerank", "/v2/rerank", "/pool/rerank", "/pool/score", "/health", "/info", "/metrics",
          "/docs", "/openapi.json")
MODEL_REFRESH_S = 5.0  # how old the default model's name may be in replies that echo it


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    try:
        content = orjson.dumps(body)
    except orjson.JSONEncodeError:  # what orjson refuses (integers past 64 bits in a v1 document object)
        content = json.dumps(body).encode()
    return Response(content, status_code=status, media_type="application/json", headers=headers)


class ClientGone(Exception):
    """The HTTP caller hung up before its answer was ready."""


class Gateway:
    """The state of one gateway process: its broker client, its metrics, and what it last heard of the pool."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.client: AsyncClient | None = None
        self.model: str | None = None
        self._model_at = -math.inf
        self._keys = [k.encode() for k in config.api_keys]

    async def start(self) -> None:
        self.client = AsyncClient(self.config.connect, timeout=self.config.timeout_s, retries=0,
                                  security=self.config.security)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()

    # -- per request -------------------------------------------------------------------

    def authorize(self, authorization: str | None) -> None:
        """Raise unless the token is one of the keys, compared in constant time against each.

        The token comes as ``Bearer KEY``, or bare (LlamaIndex's TEI reranker sends it so).
        """
        if not self._keys:
            return
        value = (authorization or "").strip()
        scheme, _, rest = value.partition(" ")
        token = (rest.strip() if scheme.lower() == "bearer" else value).encode()
        ok = False
        for key in self._keys:  # no early exit: the time taken does not tell which key came close
            ok |= hmac.compare_digest(token, key)
        if not ok:
            raise ApiError(UNAUTHORIZED, "missing or wrong API key: send it as 'Authorization: Bearer KEY'")

    def deadline_s(self, request: Request) -> float:
        raw = request.headers.get(DEADLINE_HEADER)
        if raw is None:
            return self.config.timeout_s
        try:
            ms = float(raw)
        except ValueError:
            raise ApiError(ErrorCode.BAD_REQUEST, f"{DEADLINE_HEADER} must be milliseconds, got {raw!r:.40}") from None
        if not ms > 0:
            raise ApiError(ErrorCode.BAD_REQUEST, f"{DEADLINE_HEADER} must be > 0, got {raw!r:.40}")
        return min(ms / 1000.0, self.config.max_timeout_s)

    async def call(self, request: Request, work: Callable[[AsyncClient, float], Awaitable[T]]) -> T:
        """Run ``work`` against the pool under the request's deadline; cancel it if the caller hangs up."""
        assert self.client is not None, "the gateway is not started"
        task = asyncio.ensure_future(work(self.client, self.deadline_s(request)))
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not task.done():
            task.cancel()  # the client sends `cancel`: the broker drops the request's queued pairs
            with contextlib.suppress(asyncio.CancelledError, RerankPoolError):
                await task
            raise ClientGone
        try:
            return task.result()
        except RerankPoolError as exc:
            raise ApiError.from_pool(exc) from exc

    async def default_model(self) -> str | None:
        """The pool's default model (for replies to requests that named none), refreshed at most every few
        seconds (a ping when stale)."""
        if time.monotonic() - self._model_at > MODEL_REFRESH_S and self.client is not None:
            try:
                pong = await self.client.ping(timeout=self.config.health_timeout_s)
            except RerankPoolError:
                return self.model
            self.model, self._model_at = pong.get("model") or self.model, time.monotonic()
        return self.model


async def _disconnected(request: Request) -> None:
    """Return once the caller has gone (the body is read already: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _timing_headers(usage: Usage | None, started: float, chars: int) -> dict[str, str]:
    """TEI's timing headers, in whole milliseconds as TEI writes them."""
    headers = {"x-total-time": str(int(1000 * (time.perf_counter() - started))), "x-compute-characters": str(chars)}
    if usage is not None:
        headers.update({
            "x-compute-tokens": str(usage.tokens),
            "x-tokenization-time": str(int(usage.tokenize_ms)),
            "x-queue-time": str(int(usage.queue_ms)),
            "x-inference-time": str(int(usage.inference_ms)),
        })
    return headers


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    return None if usage is None else {"tokens": usage.tokens, "tokenize_ms": usage.tokenize_ms,
                                       "queue_ms": usage.queue_ms, "inference_ms": usage.inference_ms}


def _meta(version: str, documents: int) -> dict[str, Any]:
    """Cohere's meta: a search unit is one query over up to 100 documents."""
    return {"api_version": {"version": version}, "billed_units": {"search_units": max(1, math.ceil(documents / 100))}}


def v1_text(doc: str | dict, rank_fields: Sequence[str] | None) -> str:
    """The text a v1 document is scored on: the string; an object's ``rank_fields`` as ``key: value``
    lines in that order, else its ``text``, else all its fields so (Cohere v1's reading of objects)."""
    if isinstance(doc, str):
        return doc
    fields = [k for k in rank_fields if k in doc] if rank_fields else []
    if not fields and isinstance(doc.get("text"), str):
        return doc["text"]
    return "\n".join(f"{k}: {doc[k]}" for k in (fields or doc))


def _errors(body: type) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries of a route's error statuses, all in its shape's error body."""
    return {status: {"model": body} for status in (401, 404, 413, 422, 429, 500, 503, 504)}


def _cut(top_n: int | None, documents: int) -> int | None:
    """``top_n`` as the pool takes it: at most the number of documents (a larger one means all of them)."""
    return None if top_n is None else min(top_n, documents)


# Infinity, Cohere and Jina cut long documents and never answer an error for one: so do their shapes here.
CUT = Truncation(truncate=True)


def _truncation(body: S._PoolOptions) -> Truncation:
    return Truncation(body.truncate, body.truncation_direction, body.max_tokens_per_doc)


def _chunking(body: S._PoolOptions) -> Chunking | None:
    return None if body.chunking is None else Chunking(**body.chunking.model_dump())


def _v1_document(doc: str | dict) -> dict:
    """A v1 result's document: ``{text}`` for a string, the object itself (every field kept) for an object."""
    return {"text": doc} if isinstance(doc, str) else doc


def create_app(config: GatewayConfig) -> FastAPI:
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.start()
        yield
        await gateway.stop()

    app = FastAPI(title="rerankpool", version=__version__, lifespan=lifespan,
                  description="Cross-encoder reranking from a pool of workers, in the request shapes of Text "
                              "Embeddings Inference (/rerank), Cohere (/v1/rerank, /v2/rerank) and Jina "
                              "(/v1/rerank), and the pool's own (/pool/*). Send a deadline in the "
                              f"`{DEADLINE_HEADER}` header.", docs_url=None)
    app.state.gateway = gateway
    _serve_docs(app)
    bearer = HTTPBearer(auto_error=False, description="an API key given to the gateway with --api-key")

    def authorized(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        gateway.authorize(request.headers.get("authorization"))

    guarded = [Depends(authorized)] if config.api_keys else []  # the OpenAPI document declares the key only if needed

    # -- errors, in each route's own shape ---------------------------------------------

    def shape_of(request: Request) -> Shape:
        return SHAPE_BY_PATH.get(request.url.path, Shape.POOL)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Response:
        if exc.status >= 500:
            logger.warning("%s %s: %s: %s", request.method, request.url.path, exc.code, exc.message)
        headers = {"retry-after": "1"} if exc.status == 429 else None
        return _json(error_body(shape_of(request), exc), exc.status, headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        return await on_api_error(request, ApiError(ErrorCode.BAD_REQUEST, validation_message(exc.errors())))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        logger.exception("%s %s failed", request.method, request.url.path)
        error = ApiError("internal_error", f"the gateway failed on this request ({type(exc).__name__}); "
                                           "its log has the traceback")
        return _json(error_body(shape_of(request), error), 500)

    @app.exception_handler(ClientGone)
    async def on_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; nginx's code for a closed request, for the metrics

    # -- TEI -----------------------------------------------------------------------------

    @app.post("/rerank", response_model=Union[list[S.TEIRank], S.InfinityRerankResponse], dependencies=guarded,
              tags=["TEI", "Infinity"],
              responses=_errors(S.TEIError))
    async def tei_rerank(body: Union[S.TEIRerankRequest, S.InfinityRerankRequest], request: Request) -> Response:
        """TEI's rerank (``texts``): every text scored, best first, sigmoid scores unless raw_scores.

        With ``documents`` instead, Infinity's rerank: its body and its answer, cut to top_n.
        """
        started = time.perf_counter()
        tei = isinstance(body, S.TEIRerankRequest)
        texts = body.texts if tei else body.documents  # type: ignore[union-attr]
        top_n = None if tei else _cut(body.top_n, len(texts))  # type: ignore[union-attr]
        activation = "raw" if body.raw_scores else "sigmoid"
        model = None if tei else body.model  # type: ignore[union-attr]
        truncation = (Truncation(body.truncate, body.truncation_direction.lower()) if tei  # type: ignore[union-attr]
                      else CUT)  # Infinity cuts silently
        hits: Ranking = await gateway.call(
            request, lambda c, t: c.rerank(body.query, texts, top_k=top_n, activation=activation, timeout=t,
                                           model=model, truncation=truncation))
        headers = _timing_headers(hits.usage, started, len(body.query) * len(texts) + sum(map(len, texts)))
        if tei:
            return _json([{"index": h.index, "score": h.score, **({"text": texts[h.index]} if body.return_text else {})}
                          for h in hits], headers=headers)
        tokens = hits.usage.tokens if hits.usage is not None else 0
        return _json({"object": "rerank", "id": f"rerankpool-{uuid.uuid4()}", "created": int(time.time()),
                      "model": model or await gateway.default_model() or "",
                      "results": [{"index": h.index, "relevance_score": h.score,
                                   "document": texts[h.index] if body.return_documents else None}  # type: ignore
                                  for h in hits],
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, headers=headers)

    # -- Cohere v2 -----------------------------------------------------------------------

    @app.post("/v2/rerank", response_model=S.CohereV2RerankResponse, dependencies=guarded, tags=["Cohere"],
              responses=_errors(S.CohereError))
    async def cohere_v2_rerank(body: S.CohereV2RerankRequest, request: Request) -> Response:
        """Cohere's v2 rerank: relevance_score is the sigmoid of the logit; cut to top_n here."""
        started = time.perf_counter()
        top_n = _cut(body.top_n, len(body.documents))
        hits: Ranking = await gateway.call(
            request, lambda c, t: c.rerank(body.query, body.documents, top_k=top_n, activation="sigmoid", timeout=t,
                                           model=body.model,
                                           truncation=Truncation(True, max_tokens_per_doc=body.max_tokens_per_doc)))
        results = [{"index": h.index, "relevance_score": h.score,
                    **({"document": {"text": body.documents[h.index]}} if body.return_documents else {})}
                   for h in hits]
        reply = {"id": str(uuid.uuid4()), "results": results, "meta": _meta("2", len(body.documents))}
        return _json(reply, headers=_timing_headers(hits.usage, started, sum(map(len, body.documents))))

    # -- Cohere v1 and Jina --------------------------------------------------------------

    @app.post("/v1/rerank", response_model=S.V1RerankResponse, dependencies=guarded, tags=["Cohere", "Jina"],
              responses=_errors(S.V1Error))
    async def v1_rerank(body: S.V1RerankRequest, request: Request) -> Response:
        """Cohere v1 and Jina rerank in one body: documents as strings or {text}; scores in (0, 1)."""
        started = time.perf_counter()
        texts = [v1_text(d, body.rank_fields) for d in body.documents]
        top_n = _cut(body.top_n, len(texts))
        chunks = None if body.max_chunks_per_doc is None else Chunking("max", max_windows=body.max_chunks_per_doc)
        hits: Ranking = await gateway.call(
            request, lambda c, t: c.rerank(body.query, texts, top_k=top_n, activation="sigmoid", timeout=t,
                                           model=body.model, truncation=CUT, chunking=chunks))
        results = [{"index": h.index, "relevance_score": h.score, **({"document": _v1_document(body.documents[h.index])}
                                                                      if body.return_documents else {})}
                   for h in hits]
        tokens = hits.usage.tokens if hits.usage is not None else 0
        reply = {"id": str(uuid.uuid4()), "model": body.model or await gateway.default_model() or "",
                 "results": results, "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
                 "meta": _meta("1", len(texts))}
        return _json(reply, headers=_timing_headers(hits.usage, started, sum(map(len, texts))))

    # -- the pool's own ------------------------------------------------------------------

    @app.post("/pool/rerank", response_model=S.PoolRerankResponse, dependencies=guarded, tags=["rerankpool"],
              responses=_errors(S.PoolError))
    async def pool_rerank(body: S.PoolRerankRequest, request: Request) -> Response:
        """``Client.rerank`` over HTTP: raw logits unless activation is sigmoid; best first, cut to top_k."""
        started = time.perf_counter()
        hits: Ranking = await gateway.call(
            request, lambda c, t: c.rerank(body.query, body.documents, top_k=_cut(body.top_k, len(body.documents)),
                                           return_documents=body.return_documents, activation=body.activation,
                                           timeout=t, model=body.model, truncation=_truncation(body),
                                           chunking=_chunking(body)))
        results = [{"index": h.index, "score": h.score, "document": h.document, "span": h.span} for h in hits]
        return _json({"results": results, "usage": _usage(hits.usage)},
                     headers=_timing_headers(hits.usage, started, sum(map(len, body.documents))))

    @app.post("/pool/score", response_model=S.PoolScoreResponse, dependencies=guarded, tags=["rerankpool"],
              responses=_errors(S.PoolError))
    async def pool_score(body: S.PoolScoreRequest, request: Request) -> Response:
        """``Client.score`` over HTTP: the scores of (query, document) pairs, in input order."""
        started = time.perf_counter()
        scores: Scores = await gateway.call(
            request, lambda c, t: c.score(body.pairs, activation=body.activation, timeout=t, model=body.model,
                                          truncation=_truncation(body), chunking=_chunking(body)))
        return _json({"scores": list(scores), "usage": _usage(scores.usage), "spans": scores.spans},
                     headers=_timing_headers(scores.usage, started, sum(len(d) for _, d in body.pairs)))

    # -- health, info, metrics -----------------------------------------------------------

    @app.get("/health", response_model=S.Health, tags=["operations"], responses={503: {"model": S.Health}})
    async def health() -> Response:
        """200 while a live worker serves the default model; 503 otherwise (for load balancers and probes).
        ``models`` gives each served model's live workers, for a check of one model."""
        assert gateway.client is not None
        try:
            models = await gateway.client.models(timeout=config.health_timeout_s)
            pong = await gateway.client.ping(timeout=config.health_timeout_s)
        except RerankPoolError as exc:
            return _json({"status": "unavailable", "workers": 0, "model": None,
                          "message": f"the broker at {config.connect} did not answer: {exc}"}, 503)
        default = next((m for m in models if m.default), None)
        draining = bool(pong.get("draining"))
        ok = default is not None and default.workers > 0 and not draining
        message = None if ok else ("the broker is shutting down" if draining else
                                   f"no live worker serves the default model {default.name!r}" if default else
                                   "no worker has registered with the broker")
        return _json({"status": "ok" if ok else "unavailable", "workers": sum(m.workers for m in models),
                      "model": default.name if default else None, "models": {m.name: m.workers for m in models},
                      "message": message}, 200 if ok else 503)

    @app.get("/info", dependencies=guarded, tags=["operations"])
    async def info() -> Response:
        """The models served, with their workers' engines and devices; the limits; the version."""
        assert gateway.client is not None
        try:
            stats = await gateway.client.stats(timeout=config.health_timeout_s)
        except RerankPoolError as exc:
            raise ApiError.from_pool(exc) from exc
        return _json(info_body(stats, config))

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response:
        """The pool live in a browser (``rerankpool.http.dashboard``)."""
        return Response(DASHBOARD_PAGE, media_type="text/html; charset=utf-8")

    @app.get("/dashboard/data", tags=["operations"])
    async def dashboard_data() -> Response:
        """What the dashboard draws: the broker's stats with its history; ``ok`` false when it does not answer."""
        assert gateway.client is not None
        try:
            stats = await gateway.client.stats(timeout=config.health_timeout_s, history=True)
        except RerankPoolError as exc:
            return _json({"ok": False, "error": f"the broker at {config.connect} does not answer ({exc})"})
        return _json({"ok": True, "stats": stats})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus exposition: the whole pool's metrics (from the broker), then this gateway's."""
        assert gateway.client is not None
        try:
            stats: dict[str, Any] | None = await gateway.client.stats(timeout=config.health_timeout_s)
        except RerankPoolError:
            stats = None
        return Response(gateway.metrics.render(stats), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(_Edge, gateway=gateway, max_body_bytes=config.max_body_bytes)
    return app


def _serve_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the files of ``swagger-ui-bundle``, so it works with no internet."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="rerankpool",
                                   swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/static/swagger-ui.css",
                                   swagger_favicon_url="/docs/static/favicon-32x32.png")


def info_body(stats: dict[str, Any], config: GatewayConfig) -> dict[str, Any]:
    """``/info``: TEI's fields for the default model, then the pool's models (the default first; one whose
    workers are all gone stays, with 0), the families each engine serves, the limits and the version."""
    models: dict[str, dict[str, Any]] = {
        m["name"]: {"name": m["name"], "label": m["label"], "default": m["default"], "workers": 0,
                    "queued_pairs": m["queued_pairs"], "engines": set(), "devices": set(), "dtypes": set(),
                    "max_length": None}
        for m in stats["models"]
    }
    for w in stats["workers"]:
        m = models[w["model"]]
        m["workers"] += 1
        m["engines"].add(w["engine"])
        m["devices"].add(w["device"])
        m["dtypes"].add(w["dtype"])
        m["max_length"] = w["max_length"]
    listed = [{**m, **{k: sorted(m[k]) for k in ("engines", "devices", "dtypes")}} for m in models.values()]
    first = listed[0] if listed else None
    limits = stats["limits"]
    return {
        "model_id": first["name"] if first else None,
        "model_sha": None,
        "model_dtype": first["dtypes"][0] if first and first["dtypes"] else None,
        "model_type": {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
        "max_concurrent_requests": None,
        "max_input_length": first["max_length"] if first else None,
        "max_batch_tokens": None,
        "max_batch_requests": None,
        "max_client_batch_size": limits["max_docs"],
        "auto_truncate": True,
        "tokenization_workers": len(stats["workers"]),
        "version": stats["version"],
        "sha": None,
        "docker_label": None,
        "models": listed,
        "families": [row._asdict() for row in list_families()],
        "limits": {**limits, "max_body_bytes": config.max_body_bytes, "default_timeout_s": config.timeout_s,
                   "max_timeout_s": config.max_timeout_s},
        "broker": {"host": stats["host"], "uptime_s": stats["uptime_s"], "workers": len(stats["workers"])},
    }


class _Edge:
    """The outermost ASGI layer: the body limit, and the gateway's own metrics.

    A body over the limit gets 413 before it is read in full, in the route's error shape.
    Bodies are buffered here, so the route's later reads of ``receive`` see only the
    caller's disconnect.
    """

    def __init__(self, app: Callable, gateway: Gateway, max_body_bytes: int) -> None:
        self.app, self.gateway, self.max_body_bytes = app, gateway, max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        route = path if path in ROUTES else "other"
        status = {"code": 500}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                error = ApiError(ErrorCode.TOO_LARGE, f"the request body is over {self.max_body_bytes} bytes: "
                                                      "split the request")
                response = _json(error_body(SHAPE_BY_PATH.get(path, Shape.POOL), error), error.status)
                return await response(scope, receive, send_status)
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_status)
        finally:
            self.gateway.metrics.observe(route, scope["method"], status["code"], time.perf_counter() - started)

    async def _read_body(self, scope: dict, receive: Callable) -> bytes | None:
        """The whole body, or None once it is over the limit (by its Content-Length or as it streams)."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)
