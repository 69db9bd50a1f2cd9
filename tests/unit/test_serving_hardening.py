"""The API against a hostile or careless caller (issue 14): deep JSON, secrets, readiness,
metric labels, tenant isolation, slow clients and a failed reload."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, NamedTuple

import orjson
import pytest
from fastapi.testclient import TestClient

from core.errors import BotfilterError
from core.tokens import TokenStore
from serving import api
from serving.runtime import Runtime
from serving.scorer import OnlineScorer
from serving.state import RedisState, make_state

SECRET = "hunter2"
UNAVAILABLE = "the shared window state cannot be reached: retry later"
# Nothing listens on port 1: connections are refused at once.
DEAD_REDIS = f"redis://:{SECRET}@127.0.0.1:1/0?password={SECRET}"


# --- item 4: deep nesting -------------------------------------------------------------------
def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]", core: bytes = b"") -> bytes:
    return open_ * depth + core + close * depth


@pytest.mark.parametrize(
    "body",
    [
        _nested(1025),
        _nested(1100),
        _nested(100_000),
        _nested(1000, b'[{"x":', b"}]", b"1"),  # 2,000 levels inside an event
        _nested(1000, core=b"NaN"),  # what orjson refuses goes to the standard library
        _nested(1023, b'[{"a":', b"}]", b"1e999999"),
    ],
    ids=["1025", "1100", "100k", "in-event", "nan-fallback", "big-number-fallback"],
)
def test_deeply_nested_json_is_an_immediate_422(make_runtime, make_client, world, body) -> None:
    client = make_client(make_runtime(world))
    started = time.perf_counter()
    resp = client.post("/score", content=body)
    assert time.perf_counter() - started < 2
    assert resp.status_code == 422
    assert resp.json() == {"detail": "body is nested deeper than 1024 levels"}


def test_nesting_up_to_the_limit_is_read(make_runtime, make_client, world) -> None:
    client = make_client(make_runtime(world))
    resp = client.post("/score", content=_nested(1024))
    assert resp.json() == {"detail": "item 0 must be an event object, not an array"}
    event = {**world["items"][0], "event_id": "deep-extra"}
    extra = _nested(500, b'{"x":', b"}", b"1").decode()
    body = ("[" + __import__("json").dumps(event)[:-1] + ', "extra": ' + extra + "}]").encode()
    resp = client.post("/score", content=body)
    assert resp.status_code == 200 and resp.json()[0]["event_id"] == "deep-extra"


@pytest.mark.parametrize("field", ["user_agent", "tenant_id", "event_id"])
def test_a_read_field_nested_up_to_the_limit_is_answered(
    make_runtime, make_client, world, field
) -> None:
    """The audit: a value nested 1,000 levels in a field the contract reads turned the whole
    request into a 500 (RecursionError writing it as text); the good event got no answer."""
    client = make_client(make_runtime(world))
    good = {**world["items"][0], "event_id": "good"}
    deep = {k: v for k, v in {**good, "event_id": "deep"}.items() if k != field}
    text = json.dumps(deep)[:-1] + f', "{field}": ' + _nested(1000).decode() + "}"
    body = ("[" + json.dumps(good) + "," + text + "]").encode()
    resp = client.post("/score", content=body)
    assert resp.status_code == 200
    answers = resp.json()
    assert answers[0]["event_id"] == "good" and "bot_score" in answers[0]
    assert len(answers) == 2


def test_an_unforeseen_failure_is_one_line_without_secrets(make_runtime, world, caplog) -> None:
    runtime = make_runtime(world)

    def broken(_items):
        raise RuntimeError(f"cannot open redis://:{SECRET}@cache.internal/0")

    # Replaced on this one instance, to fail the way a broken dependency would.
    runtime.score = broken  # type: ignore[method-assign]
    runtime.score_if_idle = lambda _items: None  # type: ignore[method-assign]
    client = TestClient(
        api.Gate(api.build_app(lambda: runtime), runtime=lambda: runtime),
        raise_server_exceptions=False,
    )
    with caplog.at_level("ERROR", logger="botfilter.serving"):
        resp = client.post("/score", json=world["items"][:1])
    assert resp.status_code == 500 and resp.json() == {
        "detail": "internal error: the server log has the details"
    }
    assert "cache.internal" in caplog.text and SECRET not in caplog.text


# --- items 5, 6, 16: Redis down, secrets ------------------------------------------------------
@pytest.fixture
def dead_redis_runtime(make_runtime, world) -> Runtime:
    """A runtime whose window state is a Redis nobody listens on."""
    runtime = make_runtime(world)
    dead = RedisState(DEAD_REDIS, 35 * 86_400, 1_200, "botfilter:unit-dead:")
    runtime.state = runtime.scorer.state = dead
    return runtime


def test_redis_outage_is_503_naming_no_host_and_no_password(
    dead_redis_runtime, make_client, world
) -> None:
    runtime = dead_redis_runtime
    client = make_client(runtime)
    resp = client.post("/score", json=world["items"][:2])
    assert resp.status_code == 503 and resp.json() == {"detail": UNAVAILABLE}
    for text in (resp.text, client.get("/readyz").text, client.get("/healthz").text):
        assert SECRET not in text and "127.0.0.1" not in text
    runtime.close()


def test_readyz_is_503_while_redis_is_down(dead_redis_runtime, make_client, world) -> None:
    runtime = dead_redis_runtime
    resp = make_client(runtime).get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {
        "status": "not ready: the shared window state cannot be reached",
        "model_version": "test/1",
        "state": "redis",
    }
    runtime.close()


def test_serve_does_not_print_the_redis_password() -> None:
    with pytest.raises(BotfilterError) as caught:
        make_state(f"redis://127.0.0.1:1/0?password={SECRET}", 86_400, 1_200, wait_s=0.2)
    message = str(caught.value)
    assert message.startswith("cannot reach Redis: window state in Redis at redis://127.0.0.1:1")
    assert SECRET not in message and "password=***" in message and "\n" not in message


# --- item 7: metric labels --------------------------------------------------------------------
def test_unknown_paths_are_answered_before_bentoml_and_share_one_label() -> None:
    from prometheus_client import REGISTRY

    seen: list[str] = []

    async def bentoml_app(scope, receive, send) -> None:  # stands for BentoML's whole stack
        seen.append(scope["path"])
        await api.send_json(send, 200, b"{}")

    client = TestClient(api.PathGuard(bentoml_app))
    for i in range(300):
        resp = client.get(f"/random-{i}/x?y={i}")
        assert resp.status_code == 404 and resp.json() == {"detail": "not found"}
    for path in ("/score", "/docs.json", "/metrics", "/static_content/index.css", "/readyz"):
        assert client.get(path).status_code == 200
    assert seen == ["/score", "/docs.json", "/metrics", "/static_content/index.css", "/readyz"]
    endpoints = {
        s.labels["endpoint"]
        for m in REGISTRY.collect()
        if m.name == "botfilter_http_requests"
        for s in m.samples
        if "endpoint" in s.labels
    }
    assert "other" in endpoints and not any("random" in e for e in endpoints)


# --- item 8: tenant isolation -----------------------------------------------------------------
def test_an_event_id_of_another_tenant_is_a_new_event(memory_state, world) -> None:
    items, model = world["items"], world["model"]
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    mine = items[5]
    first = scorer.score([mine], model)
    # Another tenant's event, with the same id, that scores differently on its own.
    theirs, alone = next(
        (event, answer)
        for it in items[6:]
        for event in [{**it, "event_id": mine["event_id"], "tenant_id": "other-tenant"}]
        for answer in [OnlineScorer(memory_state(), world["enrichers"]).score([event], model).items]
        if answer[0]["bot_score"] != first.items[0]["bot_score"]
    )
    second = scorer.score([theirs], model)
    assert second.duplicates == 0 and sum(second.scored.values()) == 1
    assert second.items == alone
    assert scorer.state.size()["events"] == 2
    # Each tenant's repeat is still a duplicate, answered as before.
    again = scorer.score([theirs, mine], model)
    assert again.items == second.items + first.items and again.duplicates == 2


class _Closed(NamedTuple):
    """A runtime closed by tokens: its client, its token store and a ``post`` as a token."""

    runtime: Any
    client: Any
    store: TokenStore

    def post(self, token: str | None, body: Any, path: str = "/score") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.post(path, json=body, headers=headers)


def _closed(
    make_runtime, make_client, world, tmp_path, *scopes: list[str]
) -> tuple[_Closed, list[str]]:
    """A runtime whose API takes the tokens of ``scopes`` (an empty scope: an admin token)."""
    store = TokenStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    tokens = [store.create(scope, admin=not scope)[0] for scope in scopes]
    runtime = make_runtime(world, store=store)
    return _Closed(runtime, make_client(runtime), store), tokens


def test_tokens_confine_requests_to_their_tenants(
    make_runtime, make_client, world, tmp_path
) -> None:
    api, (mine, theirs, admin) = _closed(
        make_runtime, make_client, world, tmp_path, ["t001"], ["t002"], []
    )
    runtime, store, post = api.runtime, api.store, api.post
    items = world["items"][:3]
    assert {it["tenant_id"] for it in items} == {"t001"}

    assert post(None, items).status_code == 401
    assert post("bf_unknown", items).status_code == 401
    resp = post(theirs, items)
    assert resp.status_code == 403
    assert resp.json() == {"detail": "this token may not act for tenant 't001'"}
    mixed = [*items, {**items[0], "event_id": "x", "tenant_id": " t002 "}]
    assert post(mine, mixed).json() == {"detail": "this token may not act for tenant 't002'"}
    assert runtime.state.size()["events"] == 0  # nothing refused was remembered
    assert post(mine, items).status_code == 200
    # The contract trims identifiers: so does the scope check.
    assert post(mine, [{**items[0], "tenant_id": " t001 "}]).status_code == 200
    assert post(admin, mixed).status_code == 200
    assert post(mine, None, "/reload").status_code == 403
    assert post(admin, None, "/reload").status_code == 200
    store.close()


def test_burst_windows_of_one_tenant_ignore_another_tenants_events(memory_state, world) -> None:
    items, model = world["items"], world["model"]
    target = items[60]
    flood = [
        {**target, "event_id": f"flood-{i}", "tenant_id": "intruder", "message_id": f"m-{i}"}
        for i in range(40)
    ]
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    scorer.score(flood, model)
    assert (
        scorer.score([target], model).items
        == OnlineScorer(memory_state(), world["enrichers"]).score([target], model).items
    )


# --- item 15: slow clients --------------------------------------------------------------------
@pytest.fixture
def live_server(make_runtime, world):
    """The gate and app on a real uvicorn server with the header timeout protocol (0.5 s)."""
    import uvicorn

    from serving.protocol import HeaderTimeoutProtocol

    runtime = make_runtime(world, body_timeout_s=0.5)
    app = api.Gate(api.build_app(lambda: runtime), runtime=lambda: runtime)
    HeaderTimeoutProtocol.header_timeout_s = 0.5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=HeaderTimeoutProtocol, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (or the timeout)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return data, float("inf")
    return data, time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: appl", b"GET /readyz HT"],
    ids=["idle", "half-headers", "half-request-line"],
)
def test_headers_that_never_arrive_are_timed_out(live_server, sent) -> None:
    with socket.create_connection(("127.0.0.1", live_server)) as sock:
        sock.sendall(sent)
        data, closed = _closed_within(sock, 5)
    assert 0.3 < closed < 2.5
    assert data.startswith(b"HTTP/1.1 408 ") and data.endswith(b"did not arrive in time")


def test_a_body_that_never_arrives_is_timed_out(live_server, world) -> None:
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", live_server)) as sock:
        sock.sendall(head + b"Content-Length: 100\r\n\r\n[{")
        data, closed = _closed_within(sock, 5)
    assert closed < 2.5
    assert b" 408 " in data.split(b"\r\n")[0] and b"did not arrive within 0.5 s" in data


def test_whole_requests_still_go_through_on_a_kept_alive_connection(live_server) -> None:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{live_server}") as client:
        for _ in range(3):
            assert client.get("/readyz").status_code == 200
            time.sleep(0.3)  # idle between requests, within the header timeout each time


def test_a_worker_following_a_failed_reload_logs_no_secret(make_runtime, world, caplog) -> None:
    runtime = make_runtime(world)

    def no_champion(_settings):
        raise BotfilterError(f"no model in postgresql://u:{SECRET}@registry.internal/mlflow")

    runtime._loader = no_champion
    runtime.state.bump_generation()  # another worker reloaded
    runtime._checked = float("-inf")
    with caplog.at_level("WARNING", logger="botfilter.serving"):
        runtime._follow_generation()
        deadline = time.monotonic() + 10
        while runtime._following:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert "registry.internal" in caplog.text and SECRET not in caplog.text
    assert runtime.model.version == "test/1"


def test_a_refused_event_echoing_a_lone_surrogate_is_answered(make_runtime, make_client, world):
    """orjson refuses the big integer, the standard library then accepts the lone surrogate, and
    the refused item's answer could not be encoded: a 500 before the fix (found by
    test_serving_fuzz). Now 200, the item refused, the surrogate shown as U+FFFD."""
    client = make_client(make_runtime(world))
    event = {**world["items"][0], "event_id": "@ID@", "link_count": "@N@"}
    text = json.dumps([event]).replace('"@ID@"', '"\\ud800"').replace('"@N@"', "1" * 30)
    resp = client.post("/score", content=text.encode())
    assert resp.status_code == 200
    (answer,) = resp.json()
    assert answer["event_id"] == "\ufffd"
    assert answer["error"]


# --- the byte budget: 4 KiB per event -----------------------------------------------------------
def _sized(event: dict, size: int) -> dict:
    """``event`` with its user agent padded so that its JSON, without spaces, is ``size`` bytes."""
    pad = size - len(orjson.dumps({**event, "user_agent": ""}))
    return {**event, "user_agent": "x" * pad}


def test_an_event_over_4096_bytes_is_refused_in_place(memory_state, world) -> None:
    """A 30 MB user agent was scored (4 s, every other tenant's request waiting behind it) and
    kept in the window state."""
    items = world["items"]
    at_limit = _sized({**items[0], "event_id": "at-limit"}, 4096)
    over = _sized({**items[1], "event_id": "over"}, 4097)
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    out = scorer.score([at_limit, over, items[2]], world["model"])
    assert out.items[1] == {"event_id": "over", "error": "event exceeds 4096 bytes"}
    assert [a["event_id"] for a in out.items] == ["at-limit", "over", items[2]["event_id"]]
    assert "bot_score" in out.items[0] and "bot_score" in out.items[2]
    assert out.errors == 1 and scorer.state.size()["events"] == 2


def test_a_body_over_4096_bytes_per_event_is_413_before_scoring(
    make_runtime, make_client, world
) -> None:
    runtime = make_runtime(world)
    client = make_client(runtime)
    items = world["items"]
    body = orjson.dumps([_sized({**items[0], "event_id": "huge"}, 20_000)])
    resp = client.post("/score", content=body)
    assert resp.status_code == 413
    assert resp.json() == {
        "detail": f"body of {len(body)} bytes exceeds 5120 bytes "
        "(4096 per event for 1 event, plus 1024)"
    }
    assert runtime.state.size()["events"] == 0
    # Within the request's budget, the oversized event alone is refused, in its place.
    small = [{**it, "event_id": f"s{i}"} for i, it in enumerate(items[1:4])]
    big = _sized({**items[4], "event_id": "big"}, 6000)
    resp = client.post("/score", content=orjson.dumps([small[0], big, *small[1:]]))
    assert resp.status_code == 200
    answers = resp.json()
    assert answers[1] == {"event_id": "big", "error": "event exceeds 4096 bytes"}
    assert [a["event_id"] for a in answers] == ["s0", "big", "s1", "s2"]
    assert all("bot_score" in a for i, a in enumerate(answers) if i != 1)
    assert runtime.state.size()["events"] == 3


# --- identifiers are strings (or numbers, read as their digits) ---------------------------------
@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("event_id", {"a": 1}, "an object"),
        ("event_id", True, "a boolean"),
        ("tenant_id", False, "a boolean"),
        ("message_id", ["m"], "an array"),
        ("contact_id", True, "a boolean"),
        ("campaign_id", {}, "an object"),
        ("automation_id", [], "an array"),
    ],
)
def test_an_identifier_that_is_not_text_is_refused_in_place(
    memory_state, world, field, value, kind
) -> None:
    items = world["items"]
    bad = {**items[1], "event_id": "bad", "campaign_id": None, field: value}
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    out = scorer.score([items[0], bad, items[2]], world["model"])
    assert out.items[1] == {
        "event_id": None if field == "event_id" else "bad",
        "error": f"invalid identifier: {field} must be a string, not {kind}",
    }
    assert "bot_score" in out.items[0] and "bot_score" in out.items[2]
    assert out.errors == 1 and scorer.state.size()["events"] == 2


def test_numeric_identifiers_are_read_as_their_digits(memory_state, world) -> None:
    """As the data contract reads ids written as numbers in CSV and JSON Lines files."""
    event = {**world["items"][0], "event_id": 12, "contact_id": 7.0}
    out = OnlineScorer(memory_state(), world["enrichers"]).score([event], world["model"])
    assert out.items[0]["event_id"] == "12" and "bot_score" in out.items[0]
    assert out.cleaned(["contact_id"]) == [{"contact_id": "7"}]


def test_a_scoped_token_never_acts_for_a_tenant_id_that_is_not_text(
    make_runtime, make_client, world, tmp_path
) -> None:
    """``true`` was read as the tenant ``"true"``: in the scope of a token for that tenant, and
    scored as its event."""
    api, (literal, mine, admin) = _closed(
        make_runtime, make_client, world, tmp_path, ["true"], ["t001"], []
    )
    runtime, store, post = api.runtime, api.store, api.post
    item = world["items"][0]
    assert item["tenant_id"] == "t001"

    resp = post(literal, [{**item, "tenant_id": True}])
    assert resp.status_code == 403
    assert resp.json() == {
        "detail": "this token may not act for item 0: its tenant_id is a boolean, not a string"
    }
    odd = {**item, "event_id": "odd", "tenant_id": ["t001"]}
    resp = post(mine, [item, odd])
    assert resp.status_code == 403
    assert resp.json() == {
        "detail": "this token may not act for item 1: its tenant_id is an array, not a string"
    }
    assert runtime.state.size()["events"] == 0  # nothing refused was remembered
    # An admin token acts for every tenant: the event is refused in its place.
    resp = post(admin, [item, odd])
    assert resp.status_code == 200
    assert resp.json()[1] == {
        "event_id": "odd",
        "error": "invalid identifier: tenant_id must be a string, not an array",
    }
    assert runtime.state.size()["events"] == 1
    store.close()


# --- encoding -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "offset"),
    [(b"\xff\xfe[", 0), ("[{}]".encode("utf-16"), 0), (b'[{"a": "\xe9"}]', 8)],
    ids=["utf-16-bom-truncated", "utf-16", "latin-1"],
)
def test_a_body_that_is_not_utf8_is_422_saying_so(
    make_runtime, make_client, world, body, offset
) -> None:
    """It said ``body is not valid JSON: 'utf-16-le' codec can't decode…`` (and read a whole
    UTF-16 body)."""
    resp = make_client(make_runtime(world)).post("/score", content=body)
    assert resp.status_code == 422
    assert resp.json() == {
        "detail": f"body is not valid UTF-8 JSON (invalid byte at offset {offset})"
    }


def test_a_utf8_body_with_a_byte_order_mark_is_read(make_runtime, make_client, world) -> None:
    body = b"\xef\xbb\xbf" + orjson.dumps(world["items"][:1])
    resp = make_client(make_runtime(world)).post("/score", content=body)
    assert resp.status_code == 200 and "bot_score" in resp.json()[0]
