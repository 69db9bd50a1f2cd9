"""The console's web application: the management REST API (``/api``, OpenAPI at ``/api/docs``)
and the server-rendered pages, both over :mod:`console.service`.

Tenants are walls: every route names its tenant, and a tenant outside the caller's scope, or
unknown to the store, answers 404 (the same answer, so a token cannot probe other tenants).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, field_validator
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as Scope_

from console import charts, service
from console.auth import Auth, Sessions, session_secret
from console.model import ModelInfo
from core.errors import BotfilterError, one_line_error
from core.settings import Settings
from core.text import has_controls
from core.tokens import Scope, TokenStore, hash_token
from jobs.exclusions import parse_switch
from jobs.lists import storage as lists
from jobs.lists.rules import Entry
from jobs.store import Store

HERE = Path(__file__).parent
SESSION_HOURS = 8
PAGE_ROWS = 500  # a drill-down page lists this many interactions, newest first
RETRY_AFTER_S = 30  # what a 503 asks the caller to wait while the metrics store is away
log = logging.getLogger("botfilter.console")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _Body(BaseModel):
    """A JSON body whose text fields hold no lone surrogate (a 422 in one line).

    JSON's ``\\ud800`` escape is the one way a request carries one (paths, queries and forms
    are decoded with replacement characters), and neither the store nor a JSON answer can
    encode it: so every text field of every body is checked here, once."""

    @field_validator("*")
    @classmethod
    def _text(cls, value: Any) -> Any:
        found = _SURROGATE.search(value) if isinstance(value, str) else None
        if found:
            raise ValueError(f"a lone surrogate (U+{ord(found.group()):04X}) is not text")
        return value


class SettingsBody(_Body):
    """Switches to change; a channel left out keeps its value."""

    email: bool | None = None
    sms: bool | None = None


class ListEntryBody(_Body):
    """A new list entry: ``list`` allow or block; ``kind`` ip, asn, user_agent or domain;
    ``expires_at`` ISO-8601 (no offset = UTC) or none."""

    list: str
    kind: str
    value: str
    note: str = ""
    expires_at: str | None = None


class ListChangeBody(_Body):
    """An entry's new expiry (null: never) and, optionally, its note."""

    expires_at: str | None = None
    note: str | None = None


class Console:
    """What the routes share: the store, the token check, the stored window events."""

    def __init__(
        self,
        store: Store,
        auth: Auth,
        data: service.EventSource,
        window_days: int,
        model: ModelInfo | None = None,
    ):
        self.store = store
        self.auth = auth
        self.data = data
        self.window_days = window_days
        self.model = model

    def model_info(self) -> dict[str, Any]:
        """The Model page's facts (admin only: the caller checks)."""
        if self.model is None:
            return {"champion": None, "latest": None, "estimates": {}}
        return self.model.get(service.tenants(self.store))

    def tenant(self, scope: Scope | None, tenant: str) -> str:
        """``tenant`` when the caller may see it and the store knows it, else 404."""
        if scope is None or not scope.allows(tenant) or tenant not in service.tenants(self.store):
            raise HTTPException(404, "not found")
        return tenant

    def visible(self, scope: Scope) -> list[str]:
        """The tenants the caller may see."""
        return [t for t in service.tenants(self.store) if scope.allows(t)]

    def new_entry(self, tenant: str, form: dict[str, Any], author: str) -> Entry:
        """A checked entry from API or form fields; bad input is a 422 with one line."""
        try:
            return lists.build_entry(
                tenant,
                str(form.get("list") or ""),
                str(form.get("kind") or ""),
                str(form.get("value") or ""),
                str(form.get("note") or ""),
                author,
                lists.parse_expiry(form.get("expires_at")),
            )
        except BotfilterError as exc:
            raise HTTPException(422, str(exc)) from None

    def dry_run(self, tenant: str, entry: Entry) -> dict[str, Any]:
        """The dry run of adding ``entry`` to the tenant's in-force entries."""
        now = pd.Timestamp.now(tz="UTC")
        current = [e for e in lists.entries(self.store, [tenant]) if e.active(now)]
        result = service.list_dry_run(
            self.store, self.data, tenant, [*current, entry], self.window_days
        )
        result["entry"] = lists.as_dict(entry)
        return result

    def change_entry(
        self, tenant: str, entry_id: int, who: str, expires_at: Any, note: str | None
    ) -> dict[str, Any]:
        """Set an entry's expiry (and note); 404 for another tenant's entry."""
        try:
            expiry = lists.parse_expiry(expires_at)
            entry, queued = lists.change_entry(
                self.store, tenant, entry_id, who, expires_at=expiry, note=note
            )
        except BotfilterError as exc:
            raise HTTPException(422, str(exc)) from None
        except LookupError:
            raise HTTPException(404, "not found") from None
        return {"entry": lists.as_dict(entry), "queue_ids": queued}

    def delete_entry(self, tenant: str, entry_id: int, who: str) -> list[int]:
        """Remove an entry; 404 for another tenant's entry."""
        try:
            return lists.delete_entry(self.store, tenant, entry_id, who)
        except LookupError:
            raise HTTPException(404, "not found") from None

    def add_entry(self, entry: Entry) -> dict[str, Any]:
        """Store an entry; an entry already listed is a 409."""
        try:
            stored, queued = lists.add_entry(self.store, entry)
        except BotfilterError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"entry": lists.as_dict(stored), "queue_ids": queued}


class _Segment(Convertor[str]):
    """A path segment (``{name:seg}``) as :class:`_SlashesInSegments` leaves it: ``%`` and ``/``
    still escaped, so an id holding them comes back whole; one leading ``~`` (see
    :func:`_segment`) is dropped."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value.removeprefix("~"))

    def to_string(self, value: str) -> str:
        return _segment(value)


class _SlashesInSegments:
    """Routes on the path as sent, segment by segment: an id's ``%2F`` stays inside its segment.

    The server hands the app the path already decoded, where ``/t/eu%2Facme/settings`` has
    become four segments and names nothing; every id is data and may hold a ``/``. Each raw
    segment is decoded here but for ``%`` and ``/``, which the ``seg`` convertor decodes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            segments = raw.decode("utf-8", "replace").split("?", 1)[0].split("/")
            decoded = (unquote(s).replace("%", "%25").replace("/", "%2F") for s in segments)
            scope = {**scope, "path": "/".join(decoded)}
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    tokens: TokenStore | None = None,
    secret: str | None = None,
) -> FastAPI:
    """The console app over the store named by ``settings`` (or the given ``store``). It reads
    the store only: the drill-down and the list dry run read the window events the recompute
    stored, so nothing needs warming up."""
    register_url_convertor("seg", _Segment())  # before the routes below are compiled
    store = store or Store.open(settings)
    # Tokens live in the store's database (botfilter tokens writes them there too).
    tokens = tokens or TokenStore(store.url, schema=store.schema)
    static = settings.api_token.get_secret_value() if settings.api_token else None
    ctx = Console(
        store,
        Auth(tokens, static),
        service.EventSource(),
        settings.window_days,
        ModelInfo(settings),
    )
    app = FastAPI(
        title="botfilter management API",
        docs_url=None,  # FastAPI's Swagger page loads its assets from a CDN: ours is local
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.console = ctx
    app.add_middleware(_SlashesInSegments)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret or session_secret(settings.ensure_home()),
        session_cookie="botfilter_console",
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
        https_only=False,  # served on localhost; put TLS in front for anything else
    )

    # the pages outside the page router's session: errors, the 503 and the API reference
    pages = Jinja2Templates(directory=HERE / "templates")

    def error(
        request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        """One line: ``{"detail": ...}`` for the API, else a page with a link back (a person
        clicking never sees JSON). It names nothing but ``detail``, so the 404 of another
        tenant's page reads exactly like an unknown tenant's."""
        line = " ".join(detail.split())
        if _is_api(request):
            return JSONResponse({"detail": line}, status, headers)
        values = {"title": f"{status} {HTTPStatus(status).phrase}", "detail": line}
        return pages.TemplateResponse(request, "error.html", values, status, headers)

    @app.exception_handler(BotfilterError)
    async def _user_error(request: Request, exc: BotfilterError) -> Response:
        return error(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error(request, 422, invalid_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code < 400 or _is_api(request):  # the API's JSON; the login redirect
            return await http_exception_handler(request, exc)
        return error(request, exc.status_code, str(exc.detail), exc.headers)

    async def _store_away(request: Request, exc: Exception) -> Response:
        # The store restarting or cut off is not a bug to report: say so in one line and ask to
        # retry; the query and its parameters go to the log only, masked. (Other database errors
        # stay internal errors: a 500.)
        log.warning("metrics store unreachable: %s", one_line_error(exc))
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if _is_api(request):
            said = {"detail": "the metrics store cannot be reached; try again shortly"}
            return JSONResponse(said, status_code=503, headers=headers)
        values = {"retry": RETRY_AFTER_S}
        return pages.TemplateResponse(request, "unavailable.html", values, 503, headers)

    for away in (OperationalError, InterfaceError):  # connection refused, lost or timed out
        app.add_exception_handler(away, _store_away)

    @app.middleware("http")
    async def _no_control_characters(request: Request, call_next: Any) -> Response:
        # No tenant, campaign, automation or segment id holds a control character (the
        # contract quarantines such rows), so a path with one (%00...) names nothing: 404,
        # before any query (PostgreSQL refuses NUL in text, which surfaced as a 500).
        if has_controls(request.url.path):
            return error(request, 404, "not found")
        return await call_next(request)

    app.include_router(api_router(ctx), prefix="/api")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs(request: Request) -> HTMLResponse:
        """The API reference, rendered here from the OpenAPI schema (nothing from a CDN)."""
        return pages.TemplateResponse(request, "api_docs.html", {"spec": app.openapi()})

    app.include_router(page_router(ctx))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _is_api(request: Request) -> bool:
    """Whether ``request`` is a call of the API (JSON answers), not a page."""
    return request.url.path == "/api" or request.url.path.startswith("/api/")


# Validation errors in words; any other kind says pydantic's message.
_PROBLEMS = {
    "missing": "field required",
    "int_parsing": "not an integer",
    "int_type": "not an integer",
    "int_from_float": "not an integer",
    "bool_parsing": "not true or false",
    "bool_type": "not true or false",
    "string_type": "not text",
    "string_unicode": "not valid Unicode text",
    "model_attributes_type": "not a JSON object",
    "dict_type": "not a JSON object",
}
_WHERE = ("body", "query", "path", "header", "cookie")


def invalid_line(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line: ``where: what``, ``; `` between
    (``body: field required``, ``entry_id: not an integer``)."""
    said = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        where = ".".join(loc[1:] if len(loc) > 1 and loc[0] in _WHERE else loc) or "request"
        cause = err.get("ctx", {}).get("error")
        what = _PROBLEMS.get(err.get("type", "")) or str(cause or err.get("msg") or "not valid")
        if err.get("type") == "json_invalid":  # loc is ("body", offset)
            where, what = "body", f"not valid JSON ({cause}, at character {loc[-1]})"
        said.append(f"{where}: {what}")
    return "; ".join(dict.fromkeys(said))


# --- the API --------------------------------------------------------------------------------


def api_router(ctx: Console) -> APIRouter:
    """``/api/...``: JSON for the platform's app, authenticated by a bearer token."""
    router = APIRouter()

    def scope(request: Request) -> Scope:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        found = ctx.auth.scope_of_token(token)
        if found is None:
            raise HTTPException(401, "a valid token is required", {"WWW-Authenticate": "Bearer"})
        request.state.token_hash = hash_token(token or "")
        return found

    @router.get("/tenants")
    def list_tenants(s: Scope = Depends(scope)) -> dict[str, Any]:
        """The tenants this token may see."""
        return {"tenants": ctx.visible(s)}

    @router.get("/tenants/{tenant:seg}/settings")
    def get_settings(tenant: str, s: Scope = Depends(scope)) -> dict[str, Any]:
        """ "Exclude bot interactions" per channel."""
        return service.channel_settings(ctx.store, ctx.tenant(s, tenant))

    @router.put("/tenants/{tenant:seg}/settings")
    def put_settings(
        request: Request, tenant: str, body: SettingsBody, s: Scope = Depends(scope)
    ) -> dict[str, Any]:
        """Change switches; each change is recorded and queues the 30-day recompute."""
        changes = {k: v for k, v in body.model_dump().items() if v is not None}
        if not changes:
            raise HTTPException(400, "nothing to change: give email and/or sms")
        who = ctx.auth.who(request.state.token_hash)
        done = service.change_settings(ctx.store, ctx.tenant(s, tenant), changes, who)
        return {"settings": service.channel_settings(ctx.store, tenant), "changes": done}

    @router.get("/tenants/{tenant:seg}/settings/history")
    def get_history(tenant: str, s: Scope = Depends(scope)) -> dict[str, Any]:
        """Setting changes, newest first: who, when, channel, from, to."""
        return {"history": service.history(ctx.store, ctx.tenant(s, tenant))}

    @router.get("/tenants/{tenant:seg}/settings/status")
    def get_status(tenant: str, s: Scope = Depends(scope)) -> dict[str, Any]:
        """Queued recomputes: queued -> running -> done, with times."""
        return {"recomputes": service.status(ctx.store, ctx.tenant(s, tenant))}

    @router.get("/tenants/{tenant:seg}/settings/preview")
    def get_preview(
        tenant: str, email: str | None = None, sms: str | None = None, s: Scope = Depends(scope)
    ) -> dict[str, Any]:
        """Impact of switching (``?email=on&sms=off``) over the last 30 days, from stored data."""
        return ctx_preview(ctx, ctx.tenant(s, tenant), email, sms)

    @router.get("/tenants/{tenant:seg}/metrics/{module:seg}")
    def get_metrics(tenant: str, module: str, s: Scope = Depends(scope)) -> dict[str, Any]:
        """A module table (dashboard, campaigns, automations, segments), with and without bots."""
        tenant = ctx.tenant(s, tenant)
        frame = service.metrics(ctx.store, tenant, service.check_module(module))
        return {"module": module, "rows": service.records(frame)}

    @router.get(
        "/tenants/{tenant:seg}/{module:seg}/{key:seg}/bot-interactions", response_model=None
    )
    def get_bots(
        tenant: str, module: str, key: str, format: str = "json", s: Scope = Depends(scope)
    ) -> dict[str, Any] | Response:
        """Bot interactions of a campaign or automation (``?format=csv`` for CSV)."""
        tenant = ctx.tenant(s, tenant)
        frame = service.bot_interactions(ctx.store, ctx.data, tenant, module, key)
        if format == "csv":
            return csv_response(frame, f"{tenant}-{key}-bot-interactions.csv")
        # Already plain JSON values: a JSONResponse skips FastAPI's per-value re-encoding.
        return JSONResponse({"rows": service.records(frame)})

    @router.get("/tenants/{tenant:seg}/lists")
    def get_lists(tenant: str, s: Scope = Depends(scope)) -> dict[str, Any]:
        """The tenant's allow and block list entries (expired ones too, marked inactive)."""
        tenant = ctx.tenant(s, tenant)
        return {"entries": [lists.as_dict(e) for e in lists.entries(ctx.store, [tenant])]}

    @router.get("/tenants/{tenant:seg}/lists/audit")
    def get_list_audit(tenant: str, s: Scope = Depends(scope)) -> dict[str, Any]:
        """Every list change, newest first: who, when, what, before and after."""
        return {"audit": lists.audit(ctx.store, ctx.tenant(s, tenant))}

    @router.post("/tenants/{tenant:seg}/lists/dry-run")
    def post_list_dry_run(
        request: Request, tenant: str, body: ListEntryBody, s: Scope = Depends(scope)
    ) -> dict[str, Any]:
        """What adding this entry would change over the recompute window (nothing saved):
        verdicts flipped per channel and type, open rate and CTR before -> after."""
        tenant = ctx.tenant(s, tenant)
        author = ctx.auth.author(request.state.token_hash)
        return ctx.dry_run(tenant, ctx.new_entry(tenant, body.model_dump(), author))

    @router.post("/tenants/{tenant:seg}/lists", status_code=201)
    def post_list_entry(
        request: Request, tenant: str, body: ListEntryBody, s: Scope = Depends(scope)
    ) -> dict[str, Any]:
        """Add an entry (audited; queues the recompute of the window for its channels)."""
        tenant = ctx.tenant(s, tenant)
        author = ctx.auth.author(request.state.token_hash)
        return ctx.add_entry(ctx.new_entry(tenant, body.model_dump(), author))

    @router.patch("/tenants/{tenant:seg}/lists/{entry_id:seg}")
    def patch_list_entry(
        request: Request,
        tenant: str,
        entry_id: int,
        body: ListChangeBody,
        s: Scope = Depends(scope),
    ) -> dict[str, Any]:
        """Change an entry's expiry (null: never) or note (audited; queues a recompute)."""
        tenant = ctx.tenant(s, tenant)
        who = ctx.auth.author(request.state.token_hash)
        return ctx.change_entry(tenant, entry_id, who, body.expires_at, body.note)

    @router.delete("/tenants/{tenant:seg}/lists/{entry_id:seg}")
    def delete_list_entry(
        request: Request, tenant: str, entry_id: int, s: Scope = Depends(scope)
    ) -> dict[str, Any]:
        """Remove an entry (audited; queues a recompute)."""
        tenant = ctx.tenant(s, tenant)
        who = ctx.auth.author(request.state.token_hash)
        return {"deleted": entry_id, "queue_ids": ctx.delete_entry(tenant, entry_id, who)}

    @router.get("/model")
    def get_model(s: Scope = Depends(scope)) -> dict[str, Any]:
        """Admin only: the champion, its evaluation, the gate's decision and the saved
        per-tenant accuracy estimates."""
        if not s.admin:
            raise HTTPException(404, "not found")
        return ctx.model_info()

    return router


def ctx_preview(ctx: Console, tenant: str, email: str | None, sms: str | None) -> dict[str, Any]:
    """The preview of the switches given as on/off text."""
    changes = {}
    if email is not None:
        changes["email"] = parse_switch(email, "email")
    if sms is not None:
        changes["sms"] = parse_switch(sms, "sms")
    return service.preview(ctx.store, tenant, changes, ctx.window_days)


def csv_response(frame: pd.DataFrame, name: str) -> Response:
    """A frame as a CSV download named ``name``."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL, date_format="%Y-%m-%dT%H:%M:%S%z")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    # Headers are Latin-1: a name in other letters goes in filename* (RFC 6266/5987), UTF-8
    # percent-encoded, after an ASCII filename for clients that know only that one.
    plain = "".join(ch if ch.isascii() else "_" for ch in safe)
    disposition = f'attachment; filename="{plain}"'
    if plain != safe:
        disposition += f"; filename*=UTF-8''{quote(safe, safe='')}"
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": disposition},
    )


# --- the pages ------------------------------------------------------------------------------


def _segment(value: object) -> str:
    """``value`` as one URL path segment, the one way links are written: every reserved
    character escaped (``%``, ``?``, ``#`` and ``/`` too). A tenant id is data: written raw into
    a link, ``T%41`` opened the page of tenant ``TA``, and a form on it changed TA's settings.

    A segment ``.`` or ``..`` is one browsers collapse (and ``%2e`` is a dot to them), so it
    gets a leading ``~``, and so does one starting with ``~`` to stay lossless: the ``seg``
    convertor drops exactly one. Every other id is written as it always was."""
    text = quote(str(value), safe="")
    return f"~{text}" if text in (".", "..") or text.startswith("~") else text


def page_router(ctx: Console) -> APIRouter:
    """Server-rendered pages, authenticated by the signed session; every form carries CSRF."""
    router = APIRouter(include_in_schema=False)
    sessions = Sessions(SESSION_HOURS)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["pct"] = _pct
    templates.env.filters["num"] = _num
    templates.env.filters["seg"] = _segment

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    async def check_csrf(request: Request) -> dict[str, Any]:
        form = dict(await request.form())
        sent = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
        expected = request.session.get("csrf") or ""
        # compared as bytes: compare_digest refuses text that is not ASCII (a 500: an audit)
        if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
            raise HTTPException(403, "the form expired or did not come from this console")
        return form

    def viewer(request: Request) -> Scope | None:
        if not sessions.live(request.session.get("sid")):
            return None  # logged out, or a session of an earlier run of the console
        return ctx.auth.scope_of_hash(request.session.get("token_hash"))

    def render(request: Request, name: str, scope: Scope, **values: Any) -> HTMLResponse:
        values.update(
            request=request,
            csrf=csrf_token(request),
            tenants=ctx.visible(scope),
            admin=scope.admin,
            modules=("campaigns", "automations", "segments"),
        )
        return templates.TemplateResponse(request, name, values)

    def page_scope(request: Request, tenant: str) -> tuple[Scope, str]:
        scope = viewer(request)
        if scope is None:
            raise _LoginRequired()
        return scope, ctx.tenant(scope, tenant)

    @router.get("/login")
    def login_form(request: Request) -> HTMLResponse:
        # No error text from the URL: a link could otherwise put any words in the alert box.
        return templates.TemplateResponse(
            request, "login.html", {"csrf": csrf_token(request), "error": None}
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await check_csrf(request)
        token = str(form.get("token") or "").strip()
        scope = ctx.auth.scope_of_token(token)
        if scope is None:
            return templates.TemplateResponse(
                request,
                "login.html",
                {"csrf": csrf_token(request), "error": "That token is not valid."},
                status_code=401,
            )
        sessions.end(request.session.get("sid"))
        request.session.clear()
        request.session["sid"] = sessions.start()
        request.session["token_hash"] = hash_token(token)
        request.session["csrf"] = secrets.token_urlsafe(32)  # a new session, a new CSRF token
        return RedirectResponse("/", status_code=303)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await check_csrf(request)
        sessions.end(request.session.get("sid"))  # a copy of the cookie is refused from now on
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @router.get("/")
    def home(request: Request) -> Response:
        scope = viewer(request)
        if scope is None:
            return RedirectResponse("/login", status_code=303)
        visible = ctx.visible(scope)
        if len(visible) == 1:
            return RedirectResponse(f"/t/{_segment(visible[0])}/settings", status_code=303)
        return render(request, "home.html", scope, tenant=None)

    @router.get("/t/{tenant:seg}/settings")
    def settings_page(request: Request, tenant: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        return render(
            request,
            "settings.html",
            scope,
            tenant=tenant,
            switches=service.channel_settings(ctx.store, tenant),
            history=service.history(ctx.store, tenant),
            status=service.status(ctx.store, tenant),
            page="settings",
        )

    @router.post("/t/{tenant:seg}/settings")
    async def settings_change(request: Request, tenant: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        form = await check_csrf(request)
        changes = {}
        for channel in ("email", "sms"):
            if f"{channel}_shown" in form:  # the form lists each toggle; unchecked means off
                wanted = form.get(channel) == "on"
                if form.get(f"{channel}_was") == ("on" if wanted else "off"):
                    # Not switched on this page: what is stored stays (a change made elsewhere
                    # since the page loaded was undone without its confirmation: an audit)
                    continue
                changes[channel] = wanted
        who = ctx.auth.who(request.session.get("token_hash"))
        service.change_settings(ctx.store, tenant, changes, who)
        return RedirectResponse(f"/t/{_segment(tenant)}/settings", status_code=303)

    @router.get("/t/{tenant:seg}/status")
    def status_fragment(request: Request, tenant: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        return templates.TemplateResponse(
            request, "_status.html", {"status": service.status(ctx.store, tenant)}
        )

    @router.get("/t/{tenant:seg}/preview")
    def preview_fragment(
        request: Request, tenant: str, email: str | None = None, sms: str | None = None
    ) -> Response:
        scope, tenant = page_scope(request, tenant)
        result = ctx_preview(ctx, tenant, email, sms)
        return templates.TemplateResponse(request, "_preview.html", {"p": result})

    @router.get("/t/{tenant:seg}/dashboard")
    def dashboard(request: Request, tenant: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        frame = service.metrics(ctx.store, tenant, "dashboard")
        changes = [h for h in service.history(ctx.store, tenant)]
        return render(
            request,
            "dashboard.html",
            scope,
            tenant=tenant,
            page="dashboard",
            charts={c: charts.daily_svg(frame, c, changes) for c in ("email", "sms")},
            rows=service.records(frame.sort_values(["date", "channel"], ascending=[False, True]))
            if not frame.empty
            else [],
        )

    def lists_page_response(
        request: Request, scope: Scope, tenant: str, error: str | None = None, status: int = 200
    ) -> HTMLResponse:
        now = pd.Timestamp.now(tz="UTC")
        response = render(
            request,
            "lists.html",
            scope,
            tenant=tenant,
            page="lists",
            entries=[lists.as_dict(e, now) for e in lists.entries(ctx.store, [tenant])],
            audit=lists.audit(ctx.store, tenant, limit=30),
            kinds=KIND_LABELS,
            error=error,
        )
        response.status_code = status
        return response

    @router.get("/t/{tenant:seg}/lists")
    def lists_page(request: Request, tenant: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        return lists_page_response(request, scope, tenant)

    @router.post("/t/{tenant:seg}/lists/dry-run")
    async def lists_dry_run(request: Request, tenant: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        form = await check_csrf(request)
        try:
            entry = ctx.new_entry(tenant, form, "dry run")
        except HTTPException as exc:
            return HTMLResponse(f'<p class="error">{_esc(exc.detail)}</p>', status_code=422)
        result = ctx.dry_run(tenant, entry)
        return templates.TemplateResponse(request, "_dryrun.html", {"d": result})

    @router.post("/t/{tenant:seg}/lists")
    async def lists_add(request: Request, tenant: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        form = await check_csrf(request)
        author = ctx.auth.author(request.session.get("token_hash"))
        try:
            ctx.add_entry(ctx.new_entry(tenant, form, author))
        except HTTPException as exc:
            return lists_page_response(request, scope, tenant, str(exc.detail), exc.status_code)
        return RedirectResponse(f"/t/{_segment(tenant)}/lists", status_code=303)

    @router.post("/t/{tenant:seg}/lists/{entry_id:seg}/expiry")
    async def lists_expiry(request: Request, tenant: str, entry_id: int) -> Response:
        scope, tenant = page_scope(request, tenant)
        form = await check_csrf(request)
        who = ctx.auth.author(request.session.get("token_hash"))
        try:
            ctx.change_entry(tenant, entry_id, who, form.get("expires_at"), None)
        except HTTPException as exc:
            if exc.status_code == 404:
                raise
            return lists_page_response(request, scope, tenant, str(exc.detail), exc.status_code)
        return RedirectResponse(f"/t/{_segment(tenant)}/lists", status_code=303)

    @router.post("/t/{tenant:seg}/lists/{entry_id:seg}/delete")
    async def lists_delete(request: Request, tenant: str, entry_id: int) -> Response:
        scope, tenant = page_scope(request, tenant)
        await check_csrf(request)
        ctx.delete_entry(tenant, entry_id, ctx.auth.author(request.session.get("token_hash")))
        return RedirectResponse(f"/t/{_segment(tenant)}/lists", status_code=303)

    @router.get("/model")
    def model_page(request: Request) -> Response:
        scope = viewer(request)
        if scope is None:
            raise _LoginRequired()
        if not scope.admin:
            raise HTTPException(404, "not found")
        return render(request, "model.html", scope, tenant=None, page="model", m=ctx.model_info())

    @router.get("/t/{tenant:seg}/{module:seg}")
    def module_page(
        request: Request, tenant: str, module: str, sort: str | None = None, desc: int = 1
    ) -> Response:
        scope, tenant = page_scope(request, tenant)
        if module not in ("campaigns", "automations", "segments"):
            raise HTTPException(404, "not found")
        frame = service.metrics(ctx.store, tenant, module)
        key = service.MODULES[service.MODULE_URLS[module]].keys[0]
        sort = sort if sort is not None and sort in frame.columns else "delivered"
        if not frame.empty:
            frame = frame.sort_values(sort, ascending=not desc, na_position="last", kind="stable")
        return render(
            request,
            "module.html",
            scope,
            tenant=tenant,
            page=module,
            module=module,
            key=key,
            sort=sort,
            desc=desc,
            drill=module in service.DRILL_KEYS,
            rows=service.records(frame),
        )

    @router.get("/t/{tenant:seg}/{module:seg}/{key:seg}")
    def drill_page(request: Request, tenant: str, module: str, key: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        if module not in service.DRILL_KEYS:
            raise HTTPException(404, "not found")
        frame = service.bot_interactions(ctx.store, ctx.data, tenant, module, key)
        return render(
            request,
            "drill.html",
            scope,
            tenant=tenant,
            page=module,
            module=module,
            key=key,
            total=len(frame),
            rows=service.records(frame.head(PAGE_ROWS)),  # newest first; the CSV has all
        )

    @router.get("/t/{tenant:seg}/{module:seg}/{key:seg}/bot-interactions.csv")
    def drill_csv(request: Request, tenant: str, module: str, key: str) -> Response:
        scope, tenant = page_scope(request, tenant)
        frame = service.bot_interactions(ctx.store, ctx.data, tenant, module, key)
        return csv_response(frame, f"{tenant}-{key}-bot-interactions.csv")

    return router


KIND_LABELS = {
    "ip": "IP address or CIDR",
    "asn": "ASN",
    "user_agent": "User-Agent contains",
    "domain": "recipient domain",
}


def _esc(text: Any) -> str:
    import html

    return html.escape(str(text))


class _LoginRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(303, "log in first", {"Location": "/login"})


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"
