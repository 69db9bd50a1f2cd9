"""The HTTP surface: the ``/score`` and ``/reload`` routes and the gate in front of everything.

:func:`build_app` makes the FastAPI app that the BentoML service mounts (BentoML merges its
OpenAPI into ``/docs.json``; the app's own spec is at ``/openapi.json``). :class:`Gate` is an ASGI
middleware on the whole BentoML server: it answers ``/healthz`` and ``/readyz``, and for the
protected routes checks the bearer token, its scope (``core.tokens``: admin, or a set of
tenants) and the declared body size *before* any body is read, and counts requests and latency.
Any failure it did not foresee is one line to the client (500, no secrets) and the details go to
the log. It also answers ``POST /score`` itself, with the same code as the
FastAPI route (:func:`answer_score`): the mounted app's routing and middleware layers cost more
CPU than scoring a single event. For the same reason a request of a few events is scored on the
event loop when nothing else is being scored; larger ones go to a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import _bentoml_impl.server as impl_server
import bentoml._internal.server as server
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from contract.columns import text_value
from core.redact import one_line
from core.settings import Settings
from core.tokens import ADMIN, Scope
from serving import runtime as rt
from serving.models import (
    EXAMPLE_EVENTS,
    Health,
    ReloadResult,
    request_schema,
    response_model,
)
from serving.prometheus import metrics
from serving.screen import BYTES_PER_EVENT, bad_ids, json_kind
from serving.state import PUBLIC_UNAVAILABLE, StateUnavailable

log = logging.getLogger("botfilter.serving")

PROTECTED = {"/score", "/reload"}
HEALTH = {"/healthz", "/readyz"}
# Where the gate leaves a request's scope (what its token may do) for the mounted app.
SCOPE_KEY = "botfilter.scope"
# orjson refuses deeper JSON; events are flat objects, so nothing legitimate comes close.
MAX_DEPTH = 1024
INTERNAL_ERROR = "internal error: the server log has the details"
# A request's byte budget is BYTES_PER_EVENT (serving.screen) per event it holds, plus this
# for the brackets, separators and whitespace around them.
BODY_SLACK = 1024
# Bodies up to this size (a few events) are scored on the event loop when the scorer is idle
# and the state is in process (Runtime.score_if_idle).
INLINE_BYTES = 4096


def body_budget(events: int) -> int:
    """Largest ``/score`` body accepted for a request of ``events`` events."""
    return events * BYTES_PER_EVENT + BODY_SLACK


def max_body_bytes(settings: Settings) -> int:
    """Largest ``/score`` body accepted at all (read no further), from the event limit."""
    return body_budget(settings.max_batch_events)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
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
        status = {"code": 500, "started": False}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        try:
            runtime = self.runtime()
            allowed = await authorize(runtime, scope)
            if not isinstance(allowed, Scope):
                await allowed(scope, receive, send_wrapper)
            elif path == "/score" and scope["method"] == "POST":
                assert runtime is not None  # authorize answered 503 otherwise
                answer = await answer_score(runtime, receive, allowed)
                if answer is not None:
                    await send_json(send_wrapper, *answer)
            else:
                scope[SCOPE_KEY] = allowed
                await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # one line for the client, no secrets; details in the log
            log.error("%s %s failed: %s", scope["method"], path, one_line(repr(exc)))
            log.debug("traceback", exc_info=True)
            if not status["started"]:
                await send_json(send_wrapper, 500, orjson.dumps({"detail": INTERNAL_ERROR}))
        finally:
            metrics().request(path, status["code"], time.perf_counter() - started)

    async def _health(self, path: str, scope: dict, receive: Callable, send: Callable) -> None:
        runtime = self.runtime()
        if path == "/healthz":
            body = Health(status="ok", model_version=runtime.model.version if runtime else None)
            await _json(200, body.model_dump())(scope, receive, send)
            return
        if runtime is None:
            await _json(503, Health(status="starting").model_dump())(scope, receive, send)
            return
        # The probe may wait up to a second on Redis: never on the event loop.
        ready, report = await asyncio.get_running_loop().run_in_executor(
            _executor(), runtime.health
        )
        await _json(200 if ready else 503, report)(scope, receive, send)


# Every path the server answers, besides static files: anything else is 404 from PathGuard.
KNOWN_PATHS = frozenset(
    {*PROTECTED, *HEALTH, "/livez", "/metrics", "/", "/docs.json", "/schema.json", "/openapi.json"}
)


@cache
def static_paths() -> frozenset[str]:
    """The files BentoML's documentation page serves (``/static_content/...``, ``/assets/...``)."""
    found: set[str] = set()
    for prefix, root in (
        ("/static_content/", Path(server.__file__).parent / "static_content"),
        ("/assets/", Path(impl_server.__file__).parent / "assets"),
    ):
        if root.is_dir():
            found.update(prefix + p.relative_to(root).as_posix() for p in root.rglob("*"))
    return frozenset(found)


class PathGuard:
    """ASGI middleware outside all of BentoML's: 404 for any path the server does not serve.

    BentoML's traffic metrics label requests with the raw path, so requests to random paths
    would add series to ``/metrics`` without bound; answered here, they never reach it, and
    count once in ``botfilter_http_requests_total{endpoint="other"}``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.known = KNOWN_PATHS | static_paths()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in self.known:
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        await send_json(send, 404, b'{"detail":"not found"}')
        metrics().request("other", 404, time.perf_counter() - started)


def _unauthorized() -> Any:
    return _json(
        401,
        {"detail": "missing or invalid bearer token"},
        {"WWW-Authenticate": 'Bearer realm="botfilter"'},
    )


def bearer(scope: MutableMapping[str, Any]) -> str | None:
    """The bearer token of a request, or None."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def authorize(runtime: rt.Runtime | None, scope: MutableMapping[str, Any]) -> Scope | Any:
    """What the request's token may do, or the response refusing it (503, 401, 403, 413),
    decided from the headers alone, before any body is read."""
    if runtime is None:
        return _json(503, {"detail": "the model is not loaded yet"})
    auth = runtime.auth
    try:
        if not auth.required():
            allowed: Scope | None = ADMIN  # no token configured: the API is open (docs/api.md)
        else:
            token = bearer(scope)
            if token is None:
                return _unauthorized()
            found, allowed = auth.cached(token)
            if not found:  # a database query: off the event loop
                loop = asyncio.get_running_loop()
                allowed = await loop.run_in_executor(_executor(), auth.scope, token)
    except Exception as exc:  # the token store is down: refuse, never let the request through
        log.error("cannot check an API token: %s", one_line(repr(exc)))
        return _json(503, {"detail": "the token store cannot be reached: retry later"})
    if allowed is None:
        return _unauthorized()
    if scope["path"] == "/reload" and not allowed.admin:
        return _json(403, {"detail": "reloading the model needs an admin token"})
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            return _json(400, {"detail": "invalid Content-Length"})
        limit = max_body_bytes(runtime.settings)
        if declared > limit:
            return _json(413, {"detail": f"body of {declared} bytes exceeds {limit} bytes"})
    return allowed


class BodyError(Exception):
    """The request body is not a valid ``/score`` request (status and message)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Disconnected(Exception):
    """The client went away before sending the whole body."""


async def read_body(
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]], settings: Settings
) -> bytes:
    """The ``/score`` body, or :class:`BodyError`: 413 as soon as it exceeds the byte limit,
    408 when it is not complete within ``settings.body_timeout_s`` (a client that sends half a
    body and waits must not hold a request open)."""
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            return await _read_body(receive, max_body_bytes(settings))
    except TimeoutError:
        raise BodyError(
            408, f"the body did not arrive within {settings.body_timeout_s:g} s"
        ) from None


async def _read_body(
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]], limit: int
) -> bytes:
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
    runtime: rt.Runtime, receive: Callable[[], Awaitable[MutableMapping[str, Any]]], allowed: Scope
) -> tuple[int, bytes] | None:
    """Status and JSON body answering a ``POST /score`` whose token may act for ``allowed``
    (None: the client went away)."""
    try:
        body = await read_body(receive, runtime.settings)
        loop = asyncio.get_running_loop()
        if len(body) <= INLINE_BYTES:
            # A few events cost less to score here than the hand-off to a thread and back.
            events = parse_events(body, runtime.settings.max_batch_events, allowed)
            answers = runtime.score_if_idle(events)
            if answers is None:
                answers = await loop.run_in_executor(_executor(), runtime.score, events)
            return 200, encode_answers(answers)
        # Parsing, scoring and encoding run off the event loop, which only moves bytes.
        return 200, await loop.run_in_executor(_executor(), score_body, runtime, body, allowed)
    except Disconnected:
        return None
    except BodyError as exc:
        return exc.status, orjson.dumps({"detail": exc.detail})
    except StateUnavailable as exc:
        _log_unavailable(exc)
        return 503, orjson.dumps({"detail": PUBLIC_UNAVAILABLE})


_last_unavailable_log = [0.0]


def _log_unavailable(exc: StateUnavailable) -> None:
    """Log why the state failed, at most every 10 s (an outage fails every request)."""
    now = time.monotonic()
    if now - _last_unavailable_log[0] >= 10:
        _last_unavailable_log[0] = now
        log.warning("answered 503: %s", exc)


async def send_json(send: Callable[[dict], Awaitable[None]], status: int, body: bytes) -> None:
    """Send a complete JSON response (closing the connection after a 408: the rest of the
    body may still come, and must not be read as the next request)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 408:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def score_body(runtime: rt.Runtime, body: bytes, allowed: Scope) -> bytes:
    """Answer a ``/score`` body: parse, check its shape and tenants, score, encode."""
    events = parse_events(body, runtime.settings.max_batch_events, allowed)
    return encode_answers(runtime.score(events))


def encode_answers(answers: list[dict[str, Any]]) -> bytes:
    """The answers as JSON. A refused item may echo text holding a lone surrogate (the standard
    library's JSON reader, our fallback, lets ``"\\ud800"`` through); it is sent as U+FFFD
    rather than failing the whole request."""
    try:
        return orjson.dumps(answers)
    except orjson.JSONEncodeError:
        return orjson.dumps(_as_text(answers))


def _as_text(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_as_text(k): _as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    return value


def parse_events(body: bytes, max_events: int, allowed: Scope = ADMIN) -> list[dict[str, Any]]:
    """Check the shape of a ``/score`` body: a JSON array of 1..max_events objects, within the
    byte budget of that many events (else 413), naming only tenants of ``allowed`` (else
    :class:`BodyError` 403 for the whole request)."""
    if not body.strip():
        raise BodyError(422, "empty body: send a JSON array of event objects")
    try:
        data = _loads(body)
    except ValueError as exc:
        raise BodyError(422, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise BodyError(422, f"body must be a JSON array of event objects, not {json_kind(data)}")
    if not data:
        raise BodyError(422, "body holds no events: send 1 or more")
    n = len(data)
    if n > max_events:
        raise BodyError(413, f"{n} events exceed the limit of {max_events} per request")
    limit = body_budget(n)
    if len(body) > limit:  # refused before any event is looked at, let alone scored
        events = "1 event" if n == 1 else f"{n} events"
        raise BodyError(
            413,
            f"body of {len(body)} bytes exceeds {limit} bytes "
            f"({BYTES_PER_EVENT} per event for {events}, plus {BODY_SLACK})",
        )
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise BodyError(422, f"item {i} must be an event object, not {json_kind(item)}")
    if not allowed.admin:
        # A tenant_id that is not text names no tenant a token can be scoped to; the contract
        # would read it as its JSON text (``true``, ``["t1"]``): refused as a whole, here,
        # rather than left to the per-event check that answers an admin's such event.
        unreadable = next(bad_ids(data, "tenant_id"), None)
        if unreadable is not None:
            i, kind = unreadable
            raise BodyError(
                403, f"this token may not act for item {i}: its tenant_id is {kind}, not a string"
            )
        outside = allowed.outside(named_tenants(data))
        if outside:
            shown = ", ".join(repr(t[:40]) for t in outside[:5])
            more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
            raise BodyError(403, f"this token may not act for tenant {shown}{more}")
    return data


def named_tenants(events: list[dict[str, Any]]) -> set[str]:
    """The tenant ids the events name, as the contract reads them (trimmed text)."""
    named = set()
    for item in events:
        value = item.get("tenant_id")
        if value is not None:
            tenant = text_value(value)
            if tenant is not None:
                named.add(tenant)
    return named


async def route_scope(runtime: rt.Runtime | None, scope: MutableMapping[str, Any]) -> Scope | Any:
    """The scope the gate found for this request or, with no gate in front (the app alone),
    :func:`authorize` of it here."""
    allowed = scope.get(SCOPE_KEY)
    return allowed if allowed is not None else await authorize(runtime, scope)


def _loads(body: bytes) -> Any:
    """orjson, and the standard library for what orjson refuses (integers beyond 64 bits, NaN
    literals, a UTF-8 byte order mark), so that such values reach the contract's per-event
    checks. The body must be UTF-8 (RFC 8259): the standard library would also guess UTF-16 or
    UTF-32 from the first bytes. Nesting deeper than :data:`MAX_DEPTH` is refused by both
    (never a ``RecursionError``)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc).lower():
            raise BodyError(422, f"body is nested deeper than {MAX_DEPTH} levels") from None
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as bad:
            raise BodyError(
                422, f"body is not valid UTF-8 JSON (invalid byte at offset {bad.start})"
            ) from None
        try:
            return json.loads(text)
        except RecursionError:
            raise BodyError(422, f"body is nested deeper than {MAX_DEPTH} levels") from None


def build_app(runtime: Callable[[], rt.Runtime | None] = rt.current) -> Any:
    """The FastAPI app with ``POST /score`` and ``POST /reload`` (mounted into BentoML).

    ``runtime`` gives the process's runtime (None until the service has started)."""
    app = FastAPI(
        title="botfilter",
        version="1",
        description="Bot probability, verdict and reasons for email/SMS opens and clicks.",
        docs_url=None,
        redoc_url=None,
    )
    # The documented limit is the default; BOTFILTER_MAX_BATCH_EVENTS may change it (413).
    body_schema = request_schema(Settings.model_fields["max_batch_events"].default)
    errors: dict[int | str, dict[str, Any]] = {
        401: {"description": "Bearer token missing, unknown or revoked (when tokens exist)."},
        403: {"description": "The token may not act for a tenant the request names."},
        408: {"description": "The body did not arrive in time."},
        413: {"description": "More events, or more bytes, than a request may carry."},
        422: {"description": "The body is not a JSON array of 1 or more event objects."},
        503: {"description": "The model is not loaded yet, or the shared state is unreachable."},
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
        allowed = await route_scope(current, request.scope)
        if not isinstance(allowed, Scope):
            return allowed
        assert current is not None  # route_scope answered 503 otherwise
        answer = await answer_score(current, request.receive, allowed)
        if answer is None:
            return Response(status_code=499)  # nobody is listening any more
        status, body = answer
        return Response(body, status_code=status, media_type="application/json")

    @app.post(
        "/reload",
        response_model=ReloadResult,
        responses={401: errors[401], 403: {"description": "Not an admin token."}, 503: errors[503]},
        summary="Swap in the current @champion model",
    )
    async def reload(request: Request) -> Response:
        """Load the model the champion alias points to now; requests keep being answered."""
        current = runtime()
        allowed = await route_scope(current, request.scope)
        if not isinstance(allowed, Scope):
            return allowed
        assert current is not None  # route_scope answered 503 otherwise
        try:
            done = await run_in_threadpool(current.reload)
        except Exception as exc:  # e.g. the alias was removed: keep the current model
            # The reason names the registry (its URI may hold a password): the log has it.
            log.warning("reload failed, keeping %s: %s", current.model.version, one_line(exc))
            detail = (
                f"the current @champion could not be loaded; {current.model.version} keeps "
                "answering (the server log says why)"
            )
            return JSONResponse({"detail": detail}, status_code=503)
        return JSONResponse(ReloadResult(**done.__dict__).model_dump())

    return app
