"""The HTTP surface: the ``/score`` and ``/reload`` routes and the gate in front of everything.

:func:`build_app` makes the FastAPI app that the BentoML service mounts (BentoML merges its
OpenAPI into ``/docs.json``; the app's own spec is at ``/openapi.json``). :class:`Gate` is an ASGI
middleware on the whole BentoML server: it answers ``/healthz`` and ``/readyz``, and for the
protected routes checks the bearer token and the declared body size *before* any body is read,
and counts requests and latency. It also answers ``POST /score`` itself, with the same code as the
FastAPI route (:func:`answer_score`): the mounted app's routing and middleware layers cost more
CPU than scoring a single event. For the same reason a request of a few events is scored on the
event loop when nothing else is being scored; larger ones go to a thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from botfilter.errors import BotfilterError
from botfilter.settings import Settings
from serving import runtime as rt
from serving.models import (
    EXAMPLE_EVENTS,
    Health,
    ReloadResult,
    request_schema,
    response_model,
)
from serving.state import StateUnavailable

PROTECTED = {"/score", "/reload"}
HEALTH = {"/healthz", "/readyz"}
# The byte budget per event of a request: generous for a user agent and a URL.
BYTES_PER_EVENT = 4096
# Bodies up to this size (a few events) are scored on the event loop when the scorer is idle
# and the state is in process (Runtime.score_if_idle).
INLINE_BYTES = 4096


def max_body_bytes(settings: Settings) -> int:
    """Largest ``/score`` body accepted, from the event limit."""
    return settings.max_batch_events * BYTES_PER_EVENT + 1024


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(body, status_code=status, headers=headers)


class Gate:
    """ASGI middleware: health answers, bearer auth, body size limits and request metrics."""

    def __init__(self, app: Any, runtime: Callable[[], rt.Runtime | None] = rt.current) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in HEALTH:
            await self._health(path, scope, receive, send)
            return
        if path not in PROTECTED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refuse(scope)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
            elif path == "/score" and scope["method"] == "POST":
                runtime = self.runtime()
                assert runtime is not None  # _refuse answered 503 otherwise
                answer = await answer_score(runtime, receive)
                if answer is not None:
                    await send_json(send_wrapper, *answer)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            from serving.metrics import metrics

            metrics().request(path, status["code"], time.perf_counter() - started)

    def _refuse(self, scope: dict) -> Any:
        """A response when the request must not reach the route: 503, 401 or 413."""
        runtime = self.runtime()
        if runtime is None:
            return _json(503, {"detail": "the model is not loaded yet"})
        headers = dict(scope.get("headers") or [])
        token = runtime.settings.api_token
        if token is not None:
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, value = given.partition(" ")
            expected = token.get_secret_value().encode()
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), expected
            ):
                return _json(
                    401,
                    {"detail": "missing or invalid bearer token"},
                    {"WWW-Authenticate": 'Bearer realm="botfilter"'},
                )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return _json(400, {"detail": "invalid Content-Length"})
            limit = max_body_bytes(runtime.settings)
            if declared > limit:
                return _json(413, {"detail": f"body of {declared} bytes exceeds {limit} bytes"})
        return None

    async def _health(self, path: str, scope: dict, receive: Callable, send: Callable) -> None:
        runtime = self.runtime()
        if path == "/healthz":
            body = Health(status="ok", model_version=runtime.model.version if runtime else None)
            await _json(200, body.model_dump())(scope, receive, send)
            return
        if runtime is None:
            await _json(503, Health(status="starting").model_dump())(scope, receive, send)
            return
        await _json(200, runtime.health())(scope, receive, send)


class BodyError(Exception):
    """The request body is not a valid ``/score`` request (status and message)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Disconnected(Exception):
    """The client went away before sending the whole body."""


async def read_body(receive: Callable[[], Awaitable[dict]], settings: Settings) -> bytes:
    """The ``/score`` body, or :class:`BodyError` 413 as soon as it exceeds the byte limit."""
    limit = max_body_bytes(settings)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@cache
def _executor() -> ThreadPoolExecutor:
    # Requests wait in these threads while another one scores (serving.batching merges them),
    # so there must be at least as many as requests in flight.
    return ThreadPoolExecutor(max_workers=64, thread_name_prefix="botfilter-score")


async def answer_score(
    runtime: rt.Runtime, receive: Callable[[], Awaitable[dict]]
) -> tuple[int, bytes] | None:
    """Status and JSON body answering a ``POST /score`` (None: the client went away)."""
    try:
        body = await read_body(receive, runtime.settings)
        loop = asyncio.get_running_loop()
        if len(body) <= INLINE_BYTES:
            # A few events cost less to score here than the hand-off to a thread and back.
            events = parse_events(body, runtime.settings.max_batch_events)
            answers = runtime.score_if_idle(events)
            if answers is None:
                answers = await loop.run_in_executor(_executor(), runtime.score, events)
            return 200, orjson.dumps(answers)
        # Parsing, scoring and encoding run off the event loop, which only moves bytes.
        return 200, await loop.run_in_executor(_executor(), score_body, runtime, body)
    except Disconnected:
        return None
    except BodyError as exc:
        return exc.status, orjson.dumps({"detail": exc.detail})
    except StateUnavailable as exc:
        return 503, orjson.dumps({"detail": str(exc)})


async def send_json(send: Callable[[dict], Awaitable[None]], status: int, body: bytes) -> None:
    """Send a complete JSON response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def score_body(runtime: rt.Runtime, body: bytes) -> bytes:
    """Answer a ``/score`` body: parse, check its shape, score, encode."""
    events = parse_events(body, runtime.settings.max_batch_events)
    return orjson.dumps(runtime.score(events))


def parse_events(body: bytes, max_events: int) -> list[dict[str, Any]]:
    """Check the shape of a ``/score`` body: a JSON array of 1..max_events objects."""
    if not body.strip():
        raise BodyError(422, "empty body: send a JSON array of event objects")
    try:
        data = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(422, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise BodyError(422, f"body must be a JSON array of event objects, not {_kind(data)}")
    if not data:
        raise BodyError(422, "body holds no events: send 1 or more")
    if len(data) > max_events:
        raise BodyError(413, f"{len(data)} events exceed the limit of {max_events} per request")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise BodyError(422, f"item {i} must be an event object, not {_kind(item)}")
    return data


def _loads(body: bytes) -> Any:
    """orjson, and the standard library for what orjson refuses (integers beyond 64 bits, NaN
    literals), so that such values reach the contract's per-event checks."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )


def build_app(runtime: Callable[[], rt.Runtime | None] = rt.current) -> Any:
    """The FastAPI app with ``POST /score`` and ``POST /reload`` (mounted into BentoML).

    ``runtime`` gives the process's runtime (None until the service has started)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(
        title="botfilter",
        version="1",
        description="Bot probability, verdict and reasons for email/SMS opens and clicks.",
        docs_url=None,
        redoc_url=None,
    )
    # The documented limit is the default; BOTFILTER_MAX_BATCH_EVENTS may change it (413).
    body_schema = request_schema(Settings.model_fields["max_batch_events"].default)
    errors = {
        401: {"description": "Bearer token missing or wrong (when BOTFILTER_API_TOKEN is set)."},
        413: {"description": "More events, or more bytes, than a request may carry."},
        422: {"description": "The body is not a JSON array of 1 or more event objects."},
        503: {"description": "The model is not loaded yet."},
    }

    @app.post(
        "/score",
        response_model=response_model(),
        responses={**errors, 200: {"description": "One answer per event, in the order sent."}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": body_schema, "example": list(EXAMPLE_EVENTS)}
                },
            }
        },
        summary="Score a micro-batch of opens and clicks",
    )
    async def score(request: Request) -> Response:
        """Per event, in the order sent: ``bot_score``, ``is_bot``, ``reasons`` and
        ``model_version``; or, for an event that breaks the data contract, ``error``."""
        current = runtime()
        if current is None:
            return JSONResponse({"detail": "the model is not loaded yet"}, status_code=503)
        answer = await answer_score(current, request.receive)
        if answer is None:
            return Response(status_code=499)  # nobody is listening any more
        status, body = answer
        return Response(body, status_code=status, media_type="application/json")

    @app.post(
        "/reload",
        response_model=ReloadResult,
        responses={401: errors[401], 503: errors[503]},
        summary="Swap in the current @champion model",
    )
    async def reload() -> Response:
        """Load the model the champion alias points to now; requests keep being answered."""
        current = runtime()
        if current is None:
            return JSONResponse({"detail": "the model is not loaded yet"}, status_code=503)
        try:
            done = await run_in_threadpool(current.reload)
        except BotfilterError as exc:  # e.g. the alias was removed: keep the current model
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return JSONResponse(ReloadResult(**done.__dict__).model_dump())

    return app
