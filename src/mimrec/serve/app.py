"""The scoring service: a FastAPI app over one trained bundle.

Routes: ``POST /v1/score``, ``POST /v1/items`` (write token), ``GET /v1/items/{id}``,
``GET /v1/items/{id}/similar?k=`` (content neighbours from the store's vector search),
``GET /v1/items``, ``GET /v1/users`` and ``GET /v1/users/{id}/history`` (read token),
``GET /healthz``, ``GET /metrics`` (Prometheus text, read token), ``GET /`` (a small HTML page),
``/docs`` (OpenAPI). Hosts and tokens are checked before the body is read (:mod:`.access`); size
and time limits in :mod:`.limits`.

Every client mistake is a 4xx whose JSON body names the field and the problem::

    {"error": "invalid request", "detail": [{"field": "candidates", "problem": "unknown item ids: '99999'"}]}

and an unexpected failure is a JSON 500, never a plain-text one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from mimrec import __version__
from mimrec.serve.access import LOOPBACK_HOSTS, READ_TOKEN_ENV, TOKEN_ENV, AccessGuard, Tokens
from mimrec.serve.item_writer import WrittenItem
from mimrec.serve.limits import RequestLimits
from mimrec.serve.metrics import ServiceMetrics
from mimrec.serve.request_error import RequestError
from mimrec.serve.scorer import MAX_CANDIDATES, MAX_HISTORY, Scorer
from mimrec.validation import MAX_TOKENS, text_problem

__all__ = ["TOKEN_ENV", "READ_TOKEN_ENV", "create_app", "app_from_env"]

MAX_BODY_BYTES = 8 * 1024 * 1024  # an item with an image; score requests are far smaller
MAX_HEADER_BYTES = 16 * 1024  # names + values of all request headers
MAX_SIMILAR = 100  # most neighbours one similarity request returns
BODY_TIMEOUT_S = 30.0  # the whole body must have arrived this long after the request started
ALLOWED_HOSTS_ENV = "MIMREC_ALLOWED_HOSTS"  # comma-separated, for worker processes
# The GIL hand-over interval of a serving process (Python's default 5 ms): an item add runs in a
# pool thread beside the event loop, and each time the loop needs the GIL back it waited up to
# the whole interval, several times per scored request while an add ran.
GIL_SWITCH_S = 0.0005
WRITER_NICE = 10  # item adds run this much nicer than the scoring event loop (see _yield_cpu)
log = logging.getLogger("mimrec.serve")

ItemId = StrictInt | StrictStr


class ScoreRequest(BaseModel):
    """A scoring request. Extra fields are the user's side features by name (e.g. ``age``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"history": [50, 172, 181], "candidates": [1, 2, 3], "user_id": 1, "age": "24"}]})

    history: list[ItemId] = Field(default_factory=list, max_length=MAX_HISTORY,
                                  description="item ids the user engaged with, most recent last")
    candidates: list[ItemId] = Field(min_length=1, max_length=MAX_CANDIDATES,
                                     description="item ids to score")
    user_id: ItemId | None = Field(default=None, description="a known user; omit for a new one")


class ScoreResponse(BaseModel):
    scores: list[float] = Field(description="click probability per candidate, in request order")
    model: str
    store_version: int | None


class ItemRequest(BaseModel):
    """A new (or changed) item. Extra fields are its text fields (``title``) and the CTR model's
    categorical item features (``genres``, ``category``: a value or a list of values) by
    catalogue name. A categorical value training never saw reads as "no value" and is named in
    the answer's ``unknown_values``."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"item_id": "new-1", "title": "Toy Story 5", "year": "2026",
         "genres": ["Animation", "Comedy"]}]})

    item_id: ItemId
    image: StrictStr | None = Field(default=None, description="base64 PNG or JPEG")
    attributes: list[StrictStr] | None = Field(default=None, description="attribute tokens")


class ItemResponse(BaseModel):
    item_id: str
    title: str
    in_training_catalogue: bool
    added_while_serving: bool
    store_version: int | None
    fields: dict[str, Any]
    has_image: bool = Field(default=False, description="GET /v1/items/{id}/image serves it")
    unknown_values: dict[str, list[str]] = Field(
        default_factory=dict, description="categorical values of an added item that training "
        "never saw: the model reads them as no value")
    notes: list[str] = Field(default_factory=list, description="what an add did not use "
                             "(a photo on a run that serves text-only vectors)")


WORKER_HEADER = "X-Mimrec-Worker"  # the answering worker's process id, on score answers


def error_body(items: list[tuple[str, str]], summary: str = "invalid request") -> dict:
    return {"error": summary, "detail": [{"field": f, "problem": p} for f, p in items]}


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


def create_app(scorer: Scorer, token: str | None = None, *, read_token: str | None = None,
               allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
               body_timeout: float = BODY_TIMEOUT_S) -> FastAPI:
    """The app over a loaded scorer.

    Args:
        scorer: the loaded bundle's scorer.
        token: the write token, guards item writes (None = writes refused); it also reads.
        read_token: a token for the read routes that expose users' data (None = only ``token``).
        allowed_hosts: host names requests may name in ``Host`` (``*`` = any).
        body_timeout: seconds from a request's start within which its body must have arrived.
    """
    app = FastAPI(title="mimrec scoring service", version=__version__,
                  description=f"Serving model {scorer.bundle.model_key} of {scorer.bundle.run}.")
    metrics = ServiceMetrics()
    app.add_middleware(RequestLimits, max_bytes=MAX_BODY_BYTES, max_header_bytes=MAX_HEADER_BYTES,
                       body_timeout=body_timeout)
    app.add_middleware(AccessGuard, tokens=Tokens(token, read_token),
                       allowed_hosts=tuple(allowed_hosts))
    app.add_middleware(metrics.middleware)
    metrics.set_items(scorer)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(error_body([(exc.field, exc.problem)]), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            problem = next(e.get("ctx", {}).get("error", e["msg"]) for e in errors
                           if e.get("type") == "json_invalid")
            return JSONResponse(error_body([("body", f"malformed JSON: {problem}")]), 400)
        return JSONResponse(error_body([(_field(e["loc"]), e["msg"]) for e in errors]), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = getattr(exc, "field", "path")  # limits' refusals name theirs (body)
        return JSONResponse(error_body([(field, str(exc.detail))], "request refused"),
                            exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body([("server", f"unexpected error ({type(exc).__name__}); "
                                                   "see the server log")], "internal error"), 500)

    worker = str(os.getpid())

    @app.post("/v1/score", response_model=ScoreResponse)
    async def score(req: ScoreRequest, response: Response) -> ScoreResponse:
        """Click probabilities of the candidates for a user with this behaviour history. The
        ``X-Mimrec-Worker`` header names the worker process that answered (as ``/healthz``
        does); with ``store_version`` it shows which version of the store each worker scored
        from."""
        # Runs on the event loop, not in the thread pool: a forward pass is ~3 ms of CPU, and the
        # thread hand-off plus GIL ping-pong cost more tail latency than the blocking does
        # (workers are processes; each serves its requests one after another anyway).
        side = dict(req.model_extra or {})
        scores, version = scorer.score_at_version(req.history, req.candidates, req.user_id, side)
        response.headers[WORKER_HEADER] = worker
        return ScoreResponse(scores=scores.tolist(), model=scorer.bundle.model_key,
                             store_version=version)

    writer = ThreadPoolExecutor(1, thread_name_prefix="mimrec-add", initializer=_yield_cpu)

    @app.post("/v1/items", response_model=ItemResponse, status_code=201)
    async def add_item(req: ItemRequest) -> dict:
        """Encode an item from its content and make it scorable at once (persisted). Needs the
        write token (``Authorization: Bearer ...``)."""
        # encoded and persisted by the scorer's writer (under mimrec serve a child process that
        # runs only on idle CPU; in-process, on this writer thread at a lower priority), waited
        # for on the writer thread; taken in here, on the event loop, as every worker does
        written = await asyncio.get_running_loop().run_in_executor(writer, _write, req)
        described = scorer.describe_written(written)
        metrics.set_items(scorer)
        return described

    def _write(req: ItemRequest) -> WrittenItem:
        scorer.check_can_add()  # before the fields: a model without content accepts none
        fields = dict(req.model_extra or {})
        text, categorical = scorer.text_fields, scorer.item_features
        for name, value in fields.items():
            if name not in text and name not in categorical:
                raise RequestError(name, "unknown field (text fields of this catalogue: "
                                         f"{', '.join(text) or 'none'}; categorical features: "
                                         f"{', '.join(categorical) or 'none'}; also image, "
                                         "attributes)")
            problem = (text_problem(value) if name in text
                       else categorical_problem(value))
            if problem:
                raise RequestError(name, problem)
        image = _decode_base64(req.image) if req.image is not None else None
        return scorer.write_item(req.item_id, fields, image, req.attributes)

    @app.get("/v1/items/{item_id}", response_model=ItemResponse)
    def get_item(item_id: str) -> dict:
        """What the service knows of one item."""
        return scorer.describe(item_id)

    @app.get("/v1/items/{item_id}/similar")
    def similar_items(item_id: str, k: Annotated[int, Query(ge=1, le=MAX_SIMILAR)] = 10
                      ) -> dict:
        """The ``k`` items with the nearest content vectors (cosine), from the store's vector
        search: 404 for an unknown item."""
        return {"item_id": item_id, "similar": scorer.similar(item_id, k)}

    @app.get("/v1/items/{item_id}/image", responses={200: {"content": {"image/png": {},
                                                                       "image/jpeg": {}}}})
    def item_image(item_id: str) -> Response:
        """An item's picture (the catalogue's, or the one uploaded with ``POST /v1/items``)."""
        scorer.describe(item_id)  # 404 for an unknown id
        data = scorer.image(item_id)
        if data is None:
            raise RequestError("item_id", f"item {item_id!r} has no image", status=404)
        return Response(data, media_type=image_type(data),
                        headers={"Cache-Control": "no-cache"})

    @app.get("/v1/items")
    def list_items(limit: Annotated[int, Query(ge=1, le=5000)] = 300) -> list[dict]:
        """Items added while serving (newest first), then the catalogue by popularity."""
        return scorer.popular_items(limit)

    @app.get("/v1/users")
    def list_users(limit: Annotated[int, Query(ge=1, le=5000)] = 100) -> list[dict]:
        """Known users and their number of positive events. Needs the read or write token."""
        return scorer.users(limit)

    @app.get("/v1/users/{user_id}/history")
    def user_history(user_id: str, limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 50
                     ) -> dict:
        """A known user's engaged items from the logs, oldest first. Needs the read or write
        token."""
        ids = scorer.user_history(user_id, limit)
        return {"user_id": user_id, "history": [{"item_id": i, "title": scorer.title(i)}
                                                for i in ids]}

    @app.get("/healthz")
    def healthz() -> dict:
        cat = scorer.catalogue
        return {"status": "ok", "model": scorer.bundle.model_key, "items": cat.count,
                "worker": os.getpid(),  # which worker process answered (load tests)
                "store_version": cat.store_version, "can_add_items": scorer.can_add_items,
                "text_fields": list(scorer.text_fields),
                "item_features": list(scorer.item_features), "images": scorer.has_images}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(files("mimrec.serve").joinpath("static/index.html").read_text())

    return app


def _yield_cpu() -> None:
    """Lower the calling thread's CPU priority (Linux: a thread is scheduled on its own) by
    :data:`WRITER_NICE`, so that item adds (encode, store write) run in the time scoring leaves."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICE)


def categorical_problem(value: Any) -> str | None:
    """Why a categorical feature value is refused: a string or integer, or a list of them."""
    values = value if isinstance(value, list) else [value]
    if len(values) > MAX_TOKENS:
        return f"a list has at most {MAX_TOKENS:,} entries, got {len(values):,}"
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            return (f"expected a string or an integer (or a list of them), got "
                    f"{type(v).__name__}")
        problem = text_problem(str(v))
        if problem:
            return problem
    return None


def image_type(data: bytes) -> str:
    """The media type of encoded image bytes (PNG, JPEG, else octet-stream)."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return "application/octet-stream"


def _decode_base64(text: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("image", "not valid base64") from None
    if not data:
        raise RequestError("image", "empty image")
    return data


def set_up_serving_process(threads: int) -> None:
    """A serving process's settings, made before it loads its bundle: ``threads`` torch threads
    (0: torch's default) and the short GIL switch interval (:data:`GIL_SWITCH_S`)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    sys.setswitchinterval(GIL_SWITCH_S)


def serving_scorer(run: str | Path, model: str | None, writes: bool) -> Scorer:
    """The scorer of a serving process: with ``writes`` (a write token is set) its adds run in a
    writer process, which loads the store's encoder, so this process does not: the service's
    shared one where the environment names it (a worker of ``mimrec serve --workers N``), else a
    child of this process."""
    from mimrec.serve.bundle import load_bundle
    from mimrec.serve.writer_process import SharedWriter

    shared = SharedWriter.from_env() if writes else None
    return Scorer(load_bundle(run, model, encoder=not writes), writer_process=writes,
                  shared_writer=shared)


def app_from_env() -> FastAPI:
    """An app built from ``MIMREC_RUN`` / ``MIMREC_MODEL`` / ``MIMREC_API_TOKEN`` /
    ``MIMREC_READ_TOKEN`` / ``MIMREC_ALLOWED_HOSTS`` / ``MIMREC_THREADS`` (for worker processes,
    and ASGI servers started by other tools, e.g.
    ``uvicorn --factory mimrec.serve.app:app_from_env``)."""
    from mimrec.serve.heap import keep_request_memory, settle_heap

    set_up_serving_process(int(os.environ.get("MIMREC_THREADS") or 0))
    token = os.environ.get(TOKEN_ENV) or None
    scorer = serving_scorer(os.environ["MIMREC_RUN"], os.environ.get("MIMREC_MODEL") or None,
                            writes=token is not None)
    hosts = [h.strip() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
    app = create_app(scorer, token,
                     read_token=os.environ.get(READ_TOKEN_ENV) or None,
                     allowed_hosts=hosts or LOOPBACK_HOSTS)
    settle_heap()
    keep_request_memory()
    return app
