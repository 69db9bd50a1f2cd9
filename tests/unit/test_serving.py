"""Online scoring against batch scoring, per-item errors, and the HTTP layer (in process).

The model is a real LightGBM model trained in the fixture on a tiny simulated world; the batch
answer is ``scoring.batch.score_context`` on the whole world, as ``botfilter score`` computes it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from pydantic import SecretStr

from contract.schema import EVENTS, MESSAGE_CONTEXT, SCORE_COLUMNS
from contract.validate import validate_event_items, validate_event_rows
from core.errors import BotfilterError
from core.settings import Settings
from core.tokens import TokenCache
from features.definitions import LONGEST_WINDOW_S, LOOKAHEAD_S
from features.pipeline import (
    CONTEXT_COLUMNS,
    build_features,
    context_arrays,
)
from scoring.batch import score_context
from scoring.model import BotModel
from serving import api
from serving.models import (
    EXAMPLE_EVENTS,
    TRAINING_ONLY,
    event_model,
    request_schema,
    score_model,
)
from serving.prometheus import with_bot_share
from serving.runtime import Runtime, warm_up
from serving.scorer import IpMemo, OnlineScorer, rows_to_columns
from serving.server import UNTRACED, bentoml_overrides
from training.kind import fit_kind


def _assert_same(answers: list[dict], batch: pd.DataFrame) -> None:
    got = pd.DataFrame(answers).set_index("event_id")
    assert "error" not in got.columns
    joined = batch.join(got, rsuffix="_api", how="inner")
    assert len(joined) == len(got)
    assert np.abs(joined["bot_score"] - joined["bot_score_api"]).max() <= 1e-9
    assert (joined["is_bot"] == joined["is_bot_api"]).all()
    assert [list(r) for r in joined["reasons"]] == [list(r) for r in joined["reasons_api"]]


def _as_sent(world: dict, requests: list[list[dict]]) -> pd.DataFrame:
    """The batch job's scores of each event on the data sent up to (and with) the request that
    first carried it: what the API answers, final or provisional (its look-ahead window passed
    in that data, or not: features.definitions.LOOKAHEAD_S)."""
    ctx, sent, rows = world["ctx"], set(), []
    for request in requests:
        ids = [i["event_id"] for i in request]
        new = [e for e in dict.fromkeys(ids) if e not in sent]
        sent.update(ids)
        if new:
            part = ctx[ctx["event_id"].isin(sent)]
            scores = score_context(part, world["model"], world["enrichers"])
            rows.append(scores.set_index("event_id").loc[new])
    return pd.concat(rows)


def test_world_is_big_enough_to_mean_something(world) -> None:
    batch = world["batch"]
    assert len(world["items"]) == len(batch) > 300
    assert batch["is_bot"].any() and not batch["is_bot"].all()
    assert (world["ctx"]["channel"] == "email").any()


def test_random_micro_batches_match_batch_scoring(memory_state, world, final_answers) -> None:
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    items, answers = world["items"], []
    rng = np.random.default_rng(7)
    i, requests = 0, []
    while i < len(items):
        k = int(rng.integers(1, 60))
        requests.append(items[i : i + k])
        answers += scorer.score(requests[-1], world["model"]).items
        i += k
    assert [a["event_id"] for a in answers] == [it["event_id"] for it in items]
    _assert_same(answers, _as_sent(world, requests))
    # A final answer is the batch job's on all the data; a provisional one, the causal head's.
    final = {e for _, e in final_answers(requests)}
    assert 0 < len(final) < len(items)
    _assert_same([a for a in answers if a["event_id"] in final], world["batch"])
    early = [a for a in answers if a["event_id"] not in final]
    ids = [a["event_id"] for a in early]
    causal = score_context(world["ctx"], world["model"].provisional, world["enrichers"])
    _assert_same(early, causal.set_index("event_id").loc[ids])


def test_duplicates_get_the_stored_answer_and_are_not_counted_again(memory_state, world) -> None:
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    items, model = world["items"], world["model"]
    first = scorer.score(items[:40], model)
    assert sum(first.scored.values()) == 40 and first.duplicates == 0
    # The same events again, one repeated inside the request, then the rest of the stream.
    again = scorer.score(items[10:20] + [items[15]] + items[40:80], model)
    assert again.items[:11] == first.items[10:20] + [first.items[15]]
    assert again.duplicates == 11 and sum(again.scored.values()) == 40
    rest = scorer.score(items[80:], model).items
    sent = _as_sent(world, [items[:40], items[10:20] + [items[15]] + items[40:80], items[80:]])
    _assert_same(first.items + again.items[11:] + rest, sent)
    assert scorer.state.size()["events"] == len(items)


def test_a_late_event_within_the_window_sees_its_full_history(memory_state, world) -> None:
    items = world["items"]
    times = pd.to_datetime([it["occurred_at"] for it in items], utc=True)
    # A late event: one with history (others of its message before it), sent 50 events late,
    # still within the longest window of the newest event sent before it.
    counts = (
        pd.Series([it["message_id"] for it in items])
        .groupby([it["message_id"] for it in items])
        .cumcount()
    )
    late = next(
        i
        for i in range(100, len(items) - 60)
        if counts[i] > 0
        and (times[i + 50] - times[i]).total_seconds() < LONGEST_WINDOW_S
        and any(items[j]["ip"] == items[i]["ip"] for j in range(i - 30, i))
    )
    order = items[:late] + items[late + 1 : late + 51] + [items[late]]
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    answers, requests = [], [order[k : k + 7] for k in range(0, len(order), 7)]
    for request in requests:
        answers += scorer.score(request, world["model"]).items
    # Every answer, the late event's included, is the batch job's on what was sent by then.
    _assert_same(answers, _as_sent(world, requests))
    assert (times[late + 50] - times[late]).total_seconds() < LOOKAHEAD_S  # provisional
    causal = score_context(world["ctx"], world["model"].provisional, world["enrichers"])
    _assert_same([answers[-1]], causal.set_index("event_id"))


def test_contract_breaking_events_are_answered_in_place_and_never_fail_the_others(
    memory_state, world
) -> None:
    items, model = world["items"], world["model"]
    good = items[:6]
    broken = [
        {**items[0], "event_id": "bad-ip", "ip": "300.1.2.3"},
        {**items[1], "event_id": "bad-channel", "channel": "fax"},
        {k: v for k, v in items[2].items() if k != "sent_at"} | {"event_id": "no-sent"},
        {**items[3], "event_id": "nested", "link_count": {"n": 3}},
        {**items[4], "event_id": "bad-time", "occurred_at": "yesterday"},
    ]
    mixed = [good[0], broken[0], good[1], broken[1], broken[2], good[2], broken[3], broken[4]]
    mixed += good[3:]
    out = OnlineScorer(memory_state(), world["enrichers"]).score(mixed, model).items
    errors = {a["event_id"]: a["error"] for a in out if "error" in a}
    assert errors == {
        "bad-ip": "invalid ip",
        "bad-channel": "unknown channel: fax",
        "no-sent": "missing required field: sent_at",
        "nested": "invalid integer: link_count",
        "bad-time": "unparseable timestamp: occurred_at",
    }
    assert [a["event_id"] for a in out] == [it["event_id"] for it in mixed]
    alone = OnlineScorer(memory_state(), world["enrichers"]).score(good, model).items
    assert [a for a in out if "error" not in a] == alone


def test_json_arrays_in_context_columns_are_judged_not_a_crash(memory_state, world) -> None:
    odd = {**world["items"][0], "event_id": "odd", "campaign_id": [], "automation_id": None}
    also = {**world["items"][1], "event_id": "odd2", "recipient_domain": {"a": 1}}
    out = OnlineScorer(memory_state(), world["enrichers"]).score([odd, also], world["model"]).items
    # An identifier is text (serving.screen); other text columns are judged as the JSON's text.
    assert out[0] == {
        "event_id": "odd",
        "error": "invalid identifier: campaign_id must be a string, not an array",
    }
    assert out[1] == {"event_id": "odd2", "error": "invalid recipient_domain"}


def test_stored_rows_give_the_columns_of_the_clean_frame(world) -> None:
    names = [c.name for c in EVENTS.columns if c.name not in TRAINING_ONLY]
    # Every nullable typed column missing once.
    bare = {"delivered_at": None, "asn": None, "is_hidden_link": None, "link_count": None}
    items = world["items"][:49] + [{**world["items"][49], **bare}]
    frame = pd.DataFrame(items).reindex(columns=names + list(MESSAGE_CONTEXT))
    clean, reasons = validate_event_rows(frame.loc[:, ~frame.columns.duplicated()])
    assert reasons.empty
    rows, failed = validate_event_items(items, CONTEXT_COLUMNS)
    assert failed == {} and list(rows) == list(range(50))
    stored = list(rows.values())
    assert [tuple(r) for r in json.loads(json.dumps(stored))] == stored  # JSON-ready, exactly
    got, expected = rows_to_columns(stored), context_arrays(clean.reset_index(drop=True))
    assert list(got) == list(expected) == list(CONTEXT_COLUMNS)
    for name, values in expected.items():
        assert got[name].dtype == values.dtype, name
        np.testing.assert_array_equal(got[name], values, err_msg=name)
    assert {n: got[n].dtype.kind for n in ("occurred_at", "asn", "is_hidden_link", "ip")} == {
        "occurred_at": "i",
        "asn": "f",
        "is_hidden_link": "f",
        "ip": "O",
    }


def test_ip_memo_answers_as_the_enricher_across_evictions(world) -> None:
    enricher = world["enrichers"].ip
    clean, _ = validate_event_items(world["items"][:40], CONTEXT_COLUMNS)
    rows = list(clean.values())
    rows[3] = (
        rows[3][: CONTEXT_COLUMNS.index("ip")]
        + (None,)
        + rows[3][CONTEXT_COLUMNS.index("ip") + 1 :]
    )
    cols = rows_to_columns(rows)
    expected = enricher.enrich(cols["ip"], cols["asn"])
    memo = IpMemo(enricher.enrich, max_entries=7)  # forgets everything several times
    for start in range(0, 40, 6):
        got = memo.enrich(rows[start : start + 6] + rows[:2])
        for name, values in expected.items():
            want = np.concatenate([values[start : start + 6], values[:2]])
            assert got[name].dtype == values.dtype
            np.testing.assert_array_equal(got[name], want, err_msg=name)
    whole = memo.enrich(rows)  # more distinct pairs than it keeps
    for name, values in expected.items():
        np.testing.assert_array_equal(whole[name], values, err_msg=name)


def test_models_come_from_the_contract() -> None:
    fields = event_model().model_fields
    names = [c.name for c in EVENTS.columns if c.name not in TRAINING_ONLY]
    assert list(fields) == names + [n for n in MESSAGE_CONTEXT if n not in names]
    assert {n for n, f in fields.items() if f.is_required()} == {
        "event_id", "tenant_id", "message_id", "type", "occurred_at",
        "channel", "contact_id", "sent_at",
    }  # fmt: skip
    assert list(score_model().model_fields) == list(SCORE_COLUMNS)
    schema = request_schema(500)
    assert (schema["type"], schema["minItems"], schema["maxItems"]) == ("array", 1, 500)
    assert "$defs" not in json.dumps(schema)
    assert schema["items"]["properties"]["channel"]["enum"] == ["email", "sms"]


# --- HTTP layer ---------------------------------------------------------------------------------
def test_http_scores_in_order_and_reports_health(make_runtime, make_client, world) -> None:
    runtime = make_runtime(world)
    client = make_client(runtime)
    items = world["items"]
    answers, requests = [], [items[k : k + 50] for k in range(0, 150, 50)]
    for request in requests:
        resp = client.post("/score", json=request)
        assert resp.status_code == 200
        answers += resp.json()
    _assert_same(answers, _as_sent(world, requests))
    assert client.get("/healthz").json() == {
        "status": "ok",
        "model_version": "test/1",
        "state": None,
    }
    assert client.get("/readyz").json() == {
        "status": "ready",
        "model_version": "test/1",
        "state": "memory",
    }


def test_http_refuses_bad_requests_with_clear_statuses(make_runtime, make_client, world) -> None:
    runtime = make_runtime(world, api_token=SecretStr("s3cret"))
    client = make_client(runtime)
    ok = {"Authorization": "Bearer s3cret"}
    item = world["items"][0]
    # 401 comes before the body is even looked at.
    assert client.post("/score", content=b"not json").status_code == 401
    wrong = client.post("/score", json=[item], headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/reload").status_code == 401
    cases = [
        (b"not json", 422, "body is not valid JSON"),
        (b"", 422, "empty body"),
        (b'{"a": 1}', 422, "must be a JSON array of event objects, not an object"),
        (b"[1]", 422, "item 0 must be an event object, not a number"),
        (b"[]", 422, "holds no events"),
        (json.dumps([item] * 101).encode(), 413, "101 events exceed the limit of 100"),
    ]
    for body, status, detail in cases:
        resp = client.post("/score", content=body, headers=ok)
        assert resp.status_code == status, body[:20]
        assert detail in resp.json()["detail"]
    too_big = b"[" + b" " * api.max_body_bytes(runtime.settings) + b"]"
    resp = client.post("/score", content=too_big, headers=ok)
    assert resp.status_code == 413 and "bytes" in resp.json()["detail"]
    assert client.post("/score", json=[item], headers=ok).status_code == 200


def test_http_503_until_the_runtime_exists(make_client) -> None:
    client = make_client(None)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    assert client.post("/score", json=[{}]).status_code == 503


def test_reload_swaps_the_model_between_requests(make_runtime, make_client, world) -> None:
    runtime = make_runtime(world)
    client = make_client(runtime)
    items = world["items"]
    assert client.post("/score", json=items[:2]).json()[0]["model_version"] == "test/1"
    resp = client.post("/reload")
    assert resp.json() == {
        "model_version": "test/2",
        "previous_version": "test/1",
        "changed": True,
    }
    assert runtime.state.generation() == 1
    assert {a["model_version"] for a in client.post("/score", json=items[2:5]).json()} == {"test/2"}
    assert client.get("/readyz").json()["model_version"] == "test/2"


def test_reload_failure_keeps_the_current_model_and_hides_the_tracking_uri(
    make_runtime, make_client, world, caplog
) -> None:
    runtime = make_runtime(world)
    uri = "postgresql://mlflow:hunter2@mlflow-db.internal:5432/mlflow"

    def no_champion(_: Settings) -> BotModel:
        raise BotfilterError(f"no model at models:/botfilter@champion in {uri}")

    runtime._loader = no_champion
    client = make_client(runtime)
    with caplog.at_level("WARNING", logger="botfilter.serving"):
        resp = client.post("/reload")
    assert resp.status_code == 503
    assert resp.json() == {
        "detail": "the current @champion could not be loaded; test/1 keeps answering "
        "(the server log says why)"
    }
    logged = caplog.text
    assert "mlflow-db.internal" in logged and "hunter2" not in logged  # operators see where
    assert client.post("/score", json=world["items"][:1]).json()[0]["model_version"] == "test/1"


def test_the_mounted_app_alone_answers_score_as_the_gate_does(
    make_runtime, make_client, world
) -> None:
    items = world["items"][:5]
    bare = TestClient(api.build_app(lambda: make_runtime(world)))
    gated = make_client(make_runtime(world))
    assert bare.post("/score", json=items).json() == gated.post("/score", json=items).json()
    resp = bare.post("/score", content=b"[1]")
    assert (resp.status_code, resp.json()) == (
        422,
        {"detail": "item 0 must be an event object, not a number"},
    )


def test_example_events_are_valid_and_warm_up_scores_them(memory_state, world, caplog) -> None:
    out = OnlineScorer(memory_state(), world["enrichers"]).score(
        list(EXAMPLE_EVENTS), world["model"]
    )
    assert [a["event_id"] for a in out.items] == ["example-open", "example-click"]
    assert out.errors == 0 and sum(out.scored.values()) == 2
    with caplog.at_level("WARNING", logger="botfilter.serving"):
        warm_up(world["model"], world["enrichers"])
    assert caplog.records == []


def test_bentoml_overrides_keep_the_operators_and_skip_tracing_unless_configured() -> None:
    mine = {"services": {"botfilter": {"traffic": {"timeout": 5}}}}
    got = bentoml_overrides({"BENTOML_CONFIG_OVERRIDES": json.dumps(mine)}, "botfilter", False)
    assert got == {
        "services": {
            "botfilter": {
                "traffic": {"timeout": 5},
                "logging": {"access": {"enabled": False}},
                "tracing": {"excluded_urls": list(UNTRACED)},
            }
        }
    }
    traced = {"services": {"botfilter": {"tracing": {"exporter_type": "otlp"}}}}
    got = bentoml_overrides({"BENTOML_CONFIG_OVERRIDES": json.dumps(traced)}, "botfilter", True)
    assert got["services"]["botfilter"]["tracing"] == {"exporter_type": "otlp"}
    got = bentoml_overrides({"BENTOML_CONFIG": "/etc/bentoml.yaml"}, "botfilter", True)
    assert got["services"]["botfilter"]["tracing"] == {}


def test_openapi_documents_the_event_model() -> None:
    spec = TestClient(api.build_app(lambda: None)).get("/openapi.json").json()
    body = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"] == list(EXAMPLE_EVENTS)
    assert body["schema"]["items"]["required"][:3] == ["event_id", "tenant_id", "message_id"]
    assert {"401", "413", "422"} <= set(spec["paths"]["/score"]["post"]["responses"])
    assert "/reload" in spec["paths"]


def test_bot_share_is_derived_from_summed_counters() -> None:
    text = (
        "# HELP botfilter_events_total x\n# TYPE botfilter_events_total counter\n"
        'botfilter_events_total{channel="email",outcome="scored"} 30.0\n'
        'botfilter_events_total{channel="email",outcome="scored",pid="2"} 10.0\n'
        'botfilter_events_total{channel="sms",outcome="scored"} 4.0\n'
        'botfilter_events_total{channel="any",outcome="duplicate"} 7.0\n'
        "# HELP botfilter_bot_events_total x\n# TYPE botfilter_bot_events_total counter\n"
        'botfilter_bot_events_total{channel="email"} 10.0\n'
    )
    out = with_bot_share(text)
    assert 'botfilter_bot_share{channel="email"} 0.25\n' in out
    assert 'botfilter_bot_share{channel="sms"} 0.0\n' in out
    assert with_bot_share("") == ""


def test_http_answers_carry_the_bot_kind_of_batch_scoring(world, memory_state, make_client) -> None:
    ctx = world["ctx"]
    feats = build_features(ctx, world["enrichers"])
    prep = SimpleNamespace(ctx=ctx, features=feats, y=(ctx["label"] == "bot").to_numpy(),
                           weight=None)  # fmt: skip
    m = world["model"]
    head = fit_kind(prep, Settings(threads=1))
    assert head is not None
    model = BotModel(m.booster, m.feature_names, m.calibration, m.thresholds, "test/1", 1, head)
    batch = score_context(ctx, model, world["enrichers"]).set_index("event_id")
    runtime = Runtime(Settings(max_batch_events=100), model, world["enrichers"], memory_state(),
                      auth=TokenCache(None))  # fmt: skip
    client = make_client(runtime)
    answers = []
    for k in range(0, 300, 100):
        answers += client.post("/score", json=world["items"][k : k + 100]).json()
    got = pd.DataFrame(answers).set_index("event_id")
    joined = batch.join(got, rsuffix="_api", how="inner")
    assert len(joined) == 300
    assert joined["bot_kind"].tolist() == joined["bot_kind_api"].tolist()
    assert (joined["bot_kind_api"] == "").tolist() == (~joined["is_bot_api"]).tolist()
    assert set(joined["bot_kind_api"]) - {""} <= set(head.classes)
    spec = client.get("/openapi.json").json()["components"]["schemas"]["Score"]
    assert "bot_kind" in spec["required"] and spec["properties"]["bot_kind"]["type"] == "string"


def test_a_final_answer_reads_its_messages_later_events_sent_before_it(memory_state, world):
    """An event whose look-ahead window has passed reads the later events of its message, even
    those the API was sent first (out of time order): the message's history was fetched only
    up to the event, so such an answer said "nothing followed" where the batch job sees what
    did."""
    items, model = world["items"], world["model"]
    t = pd.to_datetime([it["occurred_at"] for it in items], utc=True, format="ISO8601")
    secs = np.asarray((t - t[0]).total_seconds())
    chosen = None
    for i, e in enumerate(items):
        later = [
            j
            for j in range(i + 1, len(items))
            if items[j]["message_id"] == e["message_id"]
            and 0 < secs[j] - secs[i] <= LOOKAHEAD_S
            and (items[j]["type"] == "click" or items[j].get("ip") == e.get("ip"))
        ]
        ends = np.flatnonzero(secs >= secs[i] + LOOKAHEAD_S)
        if not later or not len(ends):
            continue
        f, z = items[later[0]], items[int(ends[0])]
        with_f = _as_sent(world, [[f], [e, z]]).loc[e["event_id"], "bot_score"]
        without = _as_sent(world, [[e, z]]).loc[e["event_id"], "bot_score"]
        if with_f != without:  # what followed changes the answer
            chosen = (e, f, z)
            break
    assert chosen is not None
    e, f, z = chosen
    scorer = OnlineScorer(memory_state(), world["enrichers"])
    answers = [*scorer.score([f], model).items, *scorer.score([e, z], model).items]
    _assert_same(answers, _as_sent(world, [[f], [e, z]]))


def test_an_event_later_than_the_lateness_is_answered_but_not_recorded(memory_state, world):
    """An event more than the tolerated lateness behind its tenant's newest event reads a
    history the state may have trimmed: its answer is given, not recorded as final (the batch
    job scores it on its whole history), while an on-time event's final answer is recorded."""
    base = pd.Timestamp(world["items"][0]["occurred_at"])
    template = {k: v for k, v in world["items"][0].items()}
    state = memory_state()
    late_s = state.burst_s - LONGEST_WINDOW_S

    def event(name: str, at_s: int, ip: str, asn: int) -> dict:
        at = (base + pd.Timedelta(seconds=at_s)).isoformat()
        return {**template, "event_id": name, "message_id": f"m-{name}", "type": "open",
                "occurred_at": at, "ip": ip, "asn": asn}  # fmt: skip

    x, y = ("198.51.100.7", 64500), ("203.0.113.9", 64501)
    scorer, model = OnlineScorer(state, world["enrichers"]), world["model"]
    for s in range(0, 1201, 60):  # one IP's events in time order
        scorer.score([event(f"x{s}", s, *x)], model)
    for s in range(1300, 3001, 100):  # then the tenant's events on another network
        scorer.score([event(f"y{s}", s, *y)], model)
    # One event 2,000 s behind the tenant's newest (3,000 s) on the first IP, one on time
    # (500 s behind), and one 700 s ahead of it: both earlier ones' look-ahead has passed.
    assert 3000 - 1000 > late_s >= 3000 - 2500
    out = scorer.score(
        [event("late", 1000, *x), event("ok", 2500, *y), event("z", 3200, *y)], model
    )
    assert all("bot_score" in a for a in out.items)  # the late event is answered all the same
    recorded = out.recorded_times()
    assert recorded[1] == (template["tenant_id"], (base + pd.Timedelta(seconds=2500)).value)
    assert recorded[0] is None  # its burst history was trimmed: not final
    assert recorded[2] is None  # provisional (look-ahead window open)
